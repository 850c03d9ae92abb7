"""Community pose requests: a user asks for a library pose, others vote once each, admins review.

A request moves open -> approved -> in_progress -> completed (with the library pose that
fulfils it), or to rejected (with a note); every change is an event the requester reads. Votes
and ``vote_count`` change in one transaction, so the count is always the number of votes.
"""

from posegen.community.requests import (
    EventView,
    RequestView,
    create_request,
    event_sentence,
    get_request,
    list_events,
    list_events_for_requester,
    list_requests,
    reference_image,
)
from posegen.community.review import ACTIONS, review
from posegen.community.votes import unvote, vote

__all__ = [
    "ACTIONS",
    "EventView",
    "RequestView",
    "create_request",
    "event_sentence",
    "get_request",
    "list_events",
    "list_events_for_requester",
    "list_requests",
    "reference_image",
    "review",
    "unvote",
    "vote",
]
