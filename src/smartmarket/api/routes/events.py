"""The durable event log, filtered by correlation id, type, sequence number and time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from smartmarket.api.routes import READ_ERRORS, EndQuery, StartQuery, services
from smartmarket.api.schemas import EventOut, EventsOut, json_safe
from smartmarket.api.security import require_read
from smartmarket.api.services import parse_range

router = APIRouter(prefix="/api", tags=["events"], dependencies=[Depends(require_read)], responses=READ_ERRORS)


@router.get("/events", response_model=EventsOut)
def get_events(
    request: Request,
    correlation_id: Annotated[str | None, Query(max_length=200, description="one causal chain")] = None,
    type: Annotated[
        list[str] | None, Query(max_length=20, description="event type(s), e.g. SignalGenerated (repeatable)")
    ] = None,
    since: Annotated[int | None, Query(ge=0, description="events with a sequence number above this")] = None,
    start: Annotated[StartQuery, Query(description="events with ts_event at or after this time")] = None,
    end: EndQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventsOut:
    """Events oldest first. Poll with ``since`` = the previous answer's ``last_seq`` to follow the log."""
    start_ms, end_ms = parse_range(start, end)
    found = services(request).events.read(
        since=since, types=type, correlation_id=correlation_id, start=start_ms, end=end_ms, limit=limit
    )
    events = []
    for stored in found:
        m = stored.message
        payload = {k: v for k, v in m.to_dict().items() if k not in ("type", "event_id", "ts_event", "ts_init")}
        events.append(
            EventOut(
                seq=stored.seq, type=m.type_name, event_id=m.event_id, ts_event=m.ts_event, ts_init=m.ts_init,
                correlation_id=m.correlation_id, causation_id=m.causation_id, payload=json_safe(payload),
            )
        )
    return EventsOut(count=len(events), last_seq=events[-1].seq if events else (since or 0), events=events)


__all__ = ["router"]
