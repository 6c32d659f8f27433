"""System diagrams (组态图): an SVG mimic of an equipment room, generated from the estate model.

``scene`` holds the drawing's plain data (nodes, pipes, captions); ``layout`` turns a room's devices and points
into a scene by room kind (pure: no database, no clock); ``view`` reads a room, its live values and its open
alarms and hands the template (templates/rooms/_diagram.html) what it draws. The page script (static/app.js)
updates values, running states, alarm colours and staleness in place from the room's live stream.
"""
