"""``augkit studio``: tune a pipeline on your own images in a local web page, live."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from augkit.cli import options


@click.command()
@options.sheet_inputs
@options.pipeline
@options.variants
@options.rows
@options.seed
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to serve on. Anything but loopback shows your images to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="The port; 0 picks a free one.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
def studio(
    inputs: tuple[Path, ...],
    pipeline_spec: str | None,
    n: int,
    rows: int,
    seed: int | None,
    host: str,
    port: int,
    open_browser: bool,
) -> None:
    """Tune a pipeline on IMAGES or a DATASET in a local web page (default: the sample photos).

    Serves a page with the pipeline as a list of steps (add any step, reorder, change its
    parameters with controls made from the step's own schema) beside the contact sheet
    `augkit preview` would write, redrawn as you change it. Export the pipeline as YAML for
    `augkit preview -p`, `augkit preprocess -p` and `augkit train --augment`. Reads images only
    under the INPUTS given, writes nothing (an export is a download), and serves 127.0.0.1
    unless --host says otherwise. Ctrl-C stops it.

    \b
    Examples:
      augkit studio --open
      augkit studio ~/data/flowers -p aug.yaml
      augkit studio cat.jpg dog.png -p "crop(size=0.8); rotate(limit=20)" --port 8765
    """
    try:
        import uvicorn

        from augkit.studio.app import allowed_hosts, create_app
    except ImportError as error:
        from augkit.errors import AugkitError

        raise AugkitError(f"augkit studio needs {error.name}, one of augkit's dependencies, missing here: "
                          "pip install starlette uvicorn") from None  # fmt: skip
    from augkit.pipeline import load_pipeline
    from augkit.pipeline.spec import spec_file
    from augkit.preview import DEFAULT_PIPELINE
    from augkit.studio.session import Studio

    pipeline = load_pipeline(pipeline_spec if pipeline_spec is not None else DEFAULT_PIPELINE, seed=seed)
    path = spec_file(pipeline_spec)
    session = Studio(inputs, pipeline, spec_dir=path.resolve().parent if path else None, n=n, rows=rows)
    listener = _listen(host, port)
    bound_port = listener.getsockname()[1]
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}/"
    # Ctrl-C waits for a sheet being drawn at most a second: a slow pipeline's render then ends
    # with the process (its thread is not waited for), not seconds after the user asked to stop.
    config = uvicorn.Config(create_app(session, allowed_hosts(host)), log_level="warning", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=1)  # fmt: skip
    server = uvicorn.Server(config)
    click.echo(f"augkit studio: {url}  (Ctrl-C stops it)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: serving on {host}: anyone who can reach this machine can see the images", err=True)
    if open_browser:
        import webbrowser

        # The socket already listens: the page's first request waits for the server.
        if not webbrowser.open(url):
            click.echo("no browser found to open: open the address above in one", err=True)
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:  # uvicorn shuts down on Ctrl-C, then raises it again for the caller
        pass
    click.echo("augkit studio: stopped")


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), bound now, so the URL printed is the one served
    (port 0: the system's free port) and a port in use is one line, not a server log."""
    from augkit.documents import short_repr
    from augkit.errors import AugkitError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(64)
    except (socket.gaierror, UnicodeError) as error:  # no such name; one IDNA cannot encode (a label over 63 characters)
        raise AugkitError(f"--host {short_repr(host)}: cannot serve there, not an address of this machine "
                          f"({getattr(error, 'strerror', None) or error}); the default, 127.0.0.1, serves this machine alone") from None  # fmt: skip
    except OSError as error:
        raise AugkitError(f"--host {host} --port {port}: cannot serve there ({error.strerror or error}); "
                          "pick another --port, or 0 for a free one") from None  # fmt: skip
    return listener
