"""Devices on other computers: agents, the recorder host's hub, file delivery.

``lsl-session agent --config lab.toml --host NAME`` runs the devices the lab config
assigns to ``NAME`` (`agent.Agent`); the recorder host's ``record --config`` listens
for its agents (`hub.AgentHub`), waits for them like devices, logs what they report
and receives their files into the session tree (`receive`). The wire format is in
`wire` and docs/multi-pc.md.
"""
