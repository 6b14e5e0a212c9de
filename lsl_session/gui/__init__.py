"""The control room: LabRecorder's window in the browser (``lsl-session gui``).

`naming` turns LabRecorder's file-name template and the run fields into the study
folders and the session name; `jobs` runs processing, BIDS export and recovery in
the background; `viewer` keeps the live traces of every channel; `app` joins them
to the remote-control handler (so the page and an RCS script share one state);
`server` serves the page and its JSON API.
"""
