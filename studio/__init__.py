"""``augkit studio``: a local web page to tune a pipeline on your own images, live.

A thin layer over ``augkit.preview`` (the sheet, byte for byte what ``augkit preview``
writes), ``augkit.pipeline`` (validation, the spec) and the registry's parameter descriptions
(the page's controls). It reads images only under the inputs it was started with, binds to
loopback unless told otherwise, and writes nothing: an export is a download.
Installed as ``augkit.studio``; Starlette and uvicorn are loaded by ``augkit studio`` alone.
"""
