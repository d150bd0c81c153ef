"""The staff web app: where an attendance officer, a safeguarding lead, a local authority team
or a social worker sees this morning's absences and records what happened (docs/staff.md).

It is a process of its own, not a part of triage or the notifier: it holds what neither of
them should (people's passwords and sessions, private notes, who looked at which child), it
faces people on a browser rather than systems on a network, and it reads and changes pupils'
data only through the two services' HTTP APIs, like any other client. Either service can be
restarted, scaled out or replaced without the screen noticing more than a slow request."""
