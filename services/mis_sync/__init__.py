"""MIS sync through Wonde: pulls each approved school's pupils, contacts and session attendance
from the Wonde API and hands them to triage like any other source — the roster by
`PUT /api/v1/schools/{urn}`, register marks as `register.mark/v1` events on
`attendance.events` (docs/contract.md §1 "MIS sync", README "Connecting a school's MIS").

It imports neither service: it is a client of triage's HTTP API and a publisher on the broker.
"""
