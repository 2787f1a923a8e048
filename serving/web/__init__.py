"""A search page over the served models: `python -m serving.web --server=HOST:8500 --port=8080`.

Type a sentence (text → the gallery's images, ranked), drop or choose a photo (image → captions,
and → similar images by the image embedding), click a result for more like this; k and a tag
(the gallery subset) as controls; each query sentence's words shaded by importance; each query's
latency. The page is plain HTML with a little vanilla JavaScript (`static/`): no build step, no
CDN, nothing is downloaded.

The app talks to the model server (tensorflow/serving in production, the stand-in here) only
through `serving.client.SearchClient` over gRPC: it never imports TensorFlow or loads a model.

Framework: Flask (pinned in setup.py's `web` extra). Why: the gRPC client is synchronous, and a
WSGI app handles each request on its own thread, so blocking calls need no async bridge (an ASGI
framework such as Starlette would run every call in a thread pool anyway); Flask is maintained
by the Pallets team, has been stable for years, brings its test client (the HTTP-level tests use
it) and werkzeug's threaded server, which is already installed beside TensorBoard. For a public
deployment, serve `serving.web.app:create_app(...)` with any WSGI server instead.

Modules: `app` (the routes: the page, the JSON API, the gallery's images), `importance` (per-word
importance from one batched text_encoder call), `files` (an image path from the gallery metadata
resolved below the gallery's folder, or refused), `__main__` (the command line).
"""
