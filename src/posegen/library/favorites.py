"""Favourites and 1-5 star ratings: one row per user and pose, and the pose's aggregates
(``favorite_count``, ``rating_count``, ``rating_sum``, ``popularity``) changed in the same
transaction as the row.

Each change first locks the pose row (``FOR NO KEY UPDATE`` on PostgreSQL; SQLite's write
transaction excludes every other writer), so concurrent changes to one pose queue up and each
reads the user's row as the one before it left it: the aggregates stay exactly the counts and
sums of the rows, whatever the concurrency. Setting what is already set changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, insert, select, update

from posegen import catalog
from posegen.db.engine import write_transaction
from posegen.db.models import PoseFavorite, PoseLibrary, PoseRating
from posegen.db.types import utcnow
from posegen.exceptions import InvalidInput, NotFound

L = PoseLibrary
F = PoseFavorite
R = PoseRating


@dataclass(frozen=True)
class FavoriteState:
    pose_id: int
    is_favorite: bool
    favorite_count: int
    popularity: int


@dataclass(frozen=True)
class RatingState:
    pose_id: int
    #: The caller's stars; None when they have not rated it.
    stars: int | None
    rating_count: int
    rating_sum: int

    @property
    def rating_average(self) -> float | None:
        return average(self.rating_count, self.rating_sum)


def average(count: int, total: int) -> float | None:
    """The mean of ``count`` ratings summing to ``total`` (two decimals); None when unrated."""
    return round(total / count, 2) if count else None


def _lock_pose(conn: Connection, pose_id: int, include_private: bool) -> None:
    stmt = select(L.id).where(L.id == pose_id, catalog.visible(include_private))
    if conn.execute(stmt.with_for_update(key_share=True)).first() is None:
        raise NotFound(f"pose {pose_id} not found")


def set_favorite(
    engine: Engine, user_id: int, pose_id: int, favorite: bool, *, include_private: bool
) -> FavoriteState:
    """Make the pose the user's favourite (or not); 404 for a pose the user cannot see."""
    with write_transaction(engine) as conn:
        _lock_pose(conn, pose_id, include_private)
        mine = F.user_id == user_id, F.pose_id == pose_id
        had = conn.execute(select(F.pose_id).where(*mine)).first() is not None
        step = int(favorite) - int(had)
        if step > 0:
            conn.execute(insert(F).values(user_id=user_id, pose_id=pose_id, created_at=utcnow()))
        elif step < 0:
            conn.execute(delete(F).where(*mine))
        if step:
            conn.execute(
                update(L)
                .where(L.id == pose_id)
                .values(favorite_count=L.favorite_count + step, popularity=L.popularity + step)
            )
        count, popularity = conn.execute(
            select(L.favorite_count, L.popularity).where(L.id == pose_id)
        ).one()
    return FavoriteState(pose_id, favorite, int(count), int(popularity))


def set_rating(
    engine: Engine, user_id: int, pose_id: int, stars: int | None, *, include_private: bool
) -> RatingState:
    """Rate the pose 1-5 stars (again: the new stars replace the old), or withdraw the rating
    (``stars=None``)."""
    if stars is not None and not (isinstance(stars, int) and 1 <= stars <= 5):
        raise InvalidInput("stars must be a whole number from 1 to 5", kind="invalid-input")
    with write_transaction(engine) as conn:
        _lock_pose(conn, pose_id, include_private)
        mine = R.user_id == user_id, R.pose_id == pose_id
        old = conn.execute(select(R.stars).where(*mine)).scalar_one_or_none()
        now = utcnow()
        if stars is not None and old is None:
            conn.execute(
                insert(R).values(
                    user_id=user_id, pose_id=pose_id, stars=stars, created_at=now, updated_at=now
                )
            )
        elif stars is not None and old != stars:
            conn.execute(update(R).where(*mine).values(stars=stars, updated_at=now))
        elif stars is None and old is not None:
            conn.execute(delete(R).where(*mine))
        count_step = int(stars is not None) - int(old is not None)
        sum_step = (stars or 0) - (old or 0)
        if count_step or sum_step:
            conn.execute(
                update(L)
                .where(L.id == pose_id)
                .values(
                    rating_count=L.rating_count + count_step, rating_sum=L.rating_sum + sum_step
                )
            )
        count, total = conn.execute(
            select(L.rating_count, L.rating_sum).where(L.id == pose_id)
        ).one()
    return RatingState(pose_id, stars, int(count), int(total))
