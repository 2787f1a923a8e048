"""`python -m serving.web --server=HOST:8500 --port=8080 [--host=127.0.0.1] [--gallery_root=PATH]`

Starts the search page (serving/web/app.py) on werkzeug's threaded WSGI server, one thread per
request, on 127.0.0.1 unless --host says otherwise (the page has no login: open it to a network
only on purpose). Prints one line `serving.web: search page on http://HOST:PORT/ ...` once it
listens (--port=0: a free port, named in that line). Ctrl-C or SIGTERM stops it.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from serving.rpc import DEFAULT_DEADLINE_S, DEFAULT_SERVER
from serving.web.app import DEFAULT_MAX_UPLOAD_MB, create_app


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m serving.web", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default=DEFAULT_SERVER,
                   help="the model server's gRPC address (tensorflow/serving or the stand-in); "
                        f"default {DEFAULT_SERVER}")
    p.add_argument("--port", type=int, default=8080, help="the page's port (0: any free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--gallery_root", default=None,
                   help="the folder the gallery metadata's image paths are relative to (the "
                        "dataset folder for a split: gallery, the indexed folder for folder:); "
                        "images are served from below it only; default: the current folder")
    p.add_argument("--max_upload_mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest photo accepted (default {DEFAULT_MAX_UPLOAD_MB:g})")
    p.add_argument("--deadline_s", type=float, default=DEFAULT_DEADLINE_S,
                   help=f"per-call gRPC deadline (default {DEFAULT_DEADLINE_S:g})")
    for name, default in (("text_model", "text_to_image"), ("image_model", "image_to_text"),
                          ("text_encoder", "text_encoder"), ("image_encoder", "image_encoder")):
        p.add_argument(f"--{name}", default=default, help=f"served model name (default {default})")
    args = p.parse_args(argv)
    if not 0 <= args.port < 65536:
        p.error(f"--port={args.port} is not a port number")
    if args.max_upload_mb <= 0:
        p.error("--max_upload_mb must be positive")
    if args.gallery_root is not None and not os.path.isdir(args.gallery_root):
        p.error(f"--gallery_root={args.gallery_root}: no such folder")
    return args


def _stop(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends serve_forever as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    from werkzeug.serving import make_server
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app = create_app(args.server, args.gallery_root, max_upload_mb=args.max_upload_mb,
                     deadline_s=args.deadline_s, text_model=args.text_model,
                     image_model=args.image_model, text_encoder=args.text_encoder,
                     image_encoder=args.image_encoder)
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}",
              file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _stop)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving.web: search page on http://{host}:{server.port}/ (model server "
          f"{args.server}, gallery images below {app.config['GALLERY_ROOT']})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.extensions["search_client"].close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
