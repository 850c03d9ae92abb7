"""Bodies of the private-pose and community-request routes (camelCase JSON, like the rest)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from posegen.api.schemas import ApiModel, Id, Keypoints, RequestModel, Tag
from posegen.db.models import RequestStatus

Name = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(max_length=2000)]
CategoryRef = Annotated[str, Field(min_length=1, max_length=64)] | Id


class PrivatePoseCreate(RequestModel):
    """Keypoints, or one of your uploads as the map (`mapUploadId`, or a multipart `map` file)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "My lunge", "keypoints": [[0.5, 0.1 + i * 0.04] for i in range(18)]}
            ]
        }
    )

    name: Name
    description: LongText | None = None
    category: CategoryRef | None = Field(
        default=None, description="Category slug or id (default: the library's first)."
    )
    tags: Annotated[list[Tag], Field(max_length=30)] | None = None
    keypoints: Keypoints | None = None
    map_upload_id: Id | None = Field(default=None, description="One of your uploads.")


class PrivatePoseUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Renamed"}]})

    name: Name | None = None
    description: LongText | None = None
    category: CategoryRef | None = None
    tags: Annotated[list[Tag], Field(max_length=30)] | None = None


class PromoteBody(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"category": "standing"}]})

    category: CategoryRef = Field(description="Library category slug or id.")
    slug: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    name: Name | None = None


class PoseRequestCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Yoga tree pose",
                    "description": "Standing on one leg, hands together above the head",
                    "category": "standing",
                    "useCase": "yoga studio posters",
                }
            ]
        }
    )

    name: Name
    description: LongText = ""
    category: CategoryRef | None = None
    use_case: LongText = ""
    reference_upload_id: Id | None = Field(
        default=None, description="One of your uploads (or a multipart `reference` file)."
    )


class PoseRequestOut(ApiModel):
    id: int
    requester_id: int
    requester_name: str
    name: str
    description: str
    category_id: int | None
    category_slug: str | None
    use_case: str
    reference_upload_id: int | None
    reference_url: str | None = Field(description="API path of the reference image, if any.")
    status: RequestStatus
    admin_note: str | None
    fulfilled_pose_id: int | None
    fulfilled_pose_slug: str | None
    vote_count: int
    voted: bool = Field(description="Whether you have voted for it.")
    created_at: dt.datetime
    updated_at: dt.datetime


class RequestEventOut(ApiModel):
    id: int
    request_id: int
    request_name: str
    status: RequestStatus = Field(description="The status the request entered.")
    note: str | None
    pose_id: int | None
    message: str = Field(description='As the requester reads it: "your request was approved: …".')
    created_at: dt.datetime


class PoseRequestDetail(PoseRequestOut):
    events: list[RequestEventOut] = Field(description="Its history, oldest first.")


class VoteOut(ApiModel):
    request_id: int
    vote_count: int
    voted: bool


class ReviewNote(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"note": "Good idea"}]})

    note: LongText | None = None


class RejectBody(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"note": "Already in the library"}]})

    note: Annotated[str, Field(min_length=1, max_length=2000)]


class CompleteBody(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"poseId": 12}]})

    pose_id: Id | None = Field(default=None, description="The library pose that fulfils it.")
    pose_slug: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    note: LongText | None = None

    @model_validator(mode="after")
    def _one_pose(self) -> CompleteBody:
        if (self.pose_id is None) == (self.pose_slug is None):
            raise ValueError("give exactly one of poseId or poseSlug")
        return self


RequestSort = Literal["votes", "newest"]
