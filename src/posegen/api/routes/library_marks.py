"""A caller's own marks on library poses: favourites and 1-5 star ratings (one each per pose).
Setting what is already set is a no-op; counts stay exact (:mod:`posegen.library.favorites`)."""

from __future__ import annotations

from fastapi import APIRouter

from posegen.api.deps import CurrentUser, EngineDep, PathId, is_admin
from posegen.api.openapi import problems
from posegen.api.schemas import FavoriteOut, RatingIn, RatingOut
from posegen.library import favorites

router = APIRouter(prefix="/library", tags=["library"])


def _favorite(engine: EngineDep, user: CurrentUser, pose_id: int, on: bool) -> FavoriteOut:
    state = favorites.set_favorite(engine, user.id, pose_id, on, include_private=is_admin(user))
    return FavoriteOut.model_validate(state, from_attributes=True)


def _rating(engine: EngineDep, user: CurrentUser, pose_id: int, stars: int | None) -> RatingOut:
    state = favorites.set_rating(engine, user.id, pose_id, stars, include_private=is_admin(user))
    return RatingOut(
        pose_id=state.pose_id,
        stars=state.stars,
        rating_average=state.rating_average,
        rating_count=state.rating_count,
    )


@router.put("/poses/{pose_id}/favorite", response_model=FavoriteOut, responses=problems(404))
def add_favorite(pose_id: PathId, user: CurrentUser, engine: EngineDep) -> FavoriteOut:
    """Make the pose one of your favourites."""
    return _favorite(engine, user, pose_id, True)


@router.delete("/poses/{pose_id}/favorite", response_model=FavoriteOut, responses=problems(404))
def remove_favorite(pose_id: PathId, user: CurrentUser, engine: EngineDep) -> FavoriteOut:
    """Take the pose off your favourites."""
    return _favorite(engine, user, pose_id, False)


@router.put("/poses/{pose_id}/rating", response_model=RatingOut, responses=problems(404, 422))
def rate(pose_id: PathId, body: RatingIn, user: CurrentUser, engine: EngineDep) -> RatingOut:
    """Rate the pose 1-5 stars; rating it again replaces your stars."""
    return _rating(engine, user, pose_id, body.stars)


@router.delete("/poses/{pose_id}/rating", response_model=RatingOut, responses=problems(404))
def unrate(pose_id: PathId, user: CurrentUser, engine: EngineDep) -> RatingOut:
    """Withdraw your rating."""
    return _rating(engine, user, pose_id, None)
