"""The web console (issue 12 §3): server-rendered pages over the stores, signed in with one-time links.

`auth` holds the sign-in links, the session cookie and CSRF; `routes` the pages and the few JSON and
event-stream endpoints its script layer calls; `templates/` and `static/` ship as package data.
"""
