"""The search page's Flask app: the page, a small JSON API over `SearchClient`, gallery images.

    GET  /                 the page (static/index.html, app.js, style.css)
    GET  /api/status       what the server serves: index_info of the two index models, or why not
    POST /api/text         {"query", "k", "tag"} → the gallery images nearest the sentence
    POST /api/explain      {"query", "top_id"} → each word's importance for the top hit
    POST /api/image        multipart `image` (+ form k, tag) → captions of the photo, and the
                           gallery images nearest its image embedding (embed_images, then
                           embedding_search on text_to_image)
    POST /api/like         {"id", "k", "tag", "gallery": "images" | "captions"} → more like this
    GET  /image?path=P     a gallery image by its metadata path, only from below the gallery root

Every answer of /api is JSON; a failure is {"error": a sentence for a person} with a status
(400 a bad query, 413 a photo over the limit, 503 the model server down or without the model,
504 no answer in time, 502 anything else the server answered, 500 a bug here, logged). No
request stops the app.
"""
from __future__ import annotations

import logging
import os
import time

import grpc
from flask import Flask, jsonify, request, send_file
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from serving.query import SearchClient, ServerError, UnsupportedError
from serving.web import files, importance

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
DEFAULT_MAX_UPLOAD_MB = 8.0
MAX_QUERY_CHARS = 1000
DEFAULT_K = 10
GALLERIES = {"images": "text_model", "captions": "image_model"}
log = logging.getLogger("serving.web")


class BadQuery(Exception):
    """A query the page can say is wrong without asking the server (HTTP 400)."""


def create_app(server: str = "localhost:8500", gallery_root: str | None = None, *,
               max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, deadline_s: float = 10.0,
               client: SearchClient | None = None, **model_names) -> Flask:
    """The app for the model server `server`; images below `gallery_root` (default: the
    current folder). `model_names`: SearchClient's text_model, image_model, text_encoder,
    image_encoder."""
    app = Flask(__name__, static_folder=STATIC, static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    search = client or SearchClient(server, deadline_s=deadline_s, **model_names)
    root = os.path.realpath(gallery_root or os.getcwd())
    app.extensions["search_client"] = search
    app.config.update(MODEL_SERVER=server, GALLERY_ROOT=root, MAX_UPLOAD_MB=max_upload_mb)

    # ------------------------------------------------------------------ errors as sentences
    def failure(message: str, status: int, detail: str = ""):
        body = {"error": message}
        if detail:
            body["detail"] = detail
        return jsonify(body), status

    @app.errorhandler(BadQuery)
    def bad_query(e):
        return failure(str(e), 400)

    @app.errorhandler(ServerError)
    def server_error(e: ServerError):
        code = e.code
        if code == grpc.StatusCode.UNAVAILABLE:
            return failure(f"The model server at {server} cannot be reached: is "
                           f"tensorflow/serving (or the stand-in) running there?", 503, e.message)
        if code == grpc.StatusCode.NOT_FOUND:
            return failure(f"The model server at {server} does not serve a model this page "
                           f"needs: {e.details or e.message}", 503, e.message)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return failure(f"The model server refused the query: {e.details or e.message}", 400,
                           e.message)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return failure(f"The model server at {server} did not answer within {deadline_s:g} s",
                           504, e.message)
        return failure(f"The model server answered with an error: {e.message}", 502)

    @app.errorhandler(UnsupportedError)
    def unsupported(e):
        return failure(f"The served model cannot answer this query: {e.message}", 503)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(e):
        return failure(f"That file is larger than the {max_upload_mb:g} MB limit: choose a "
                       f"smaller photo", 413)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if request.path.startswith("/api/"):
            return failure(e.description or e.name, e.code or 500)
        return e

    @app.errorhandler(Exception)
    def unexpected(e):
        if isinstance(e, HTTPException):
            return http_error(e)
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return failure("Something went wrong in the search page itself (its console has the "
                       "details); the page still works for other queries", 500)

    # ------------------------------------------------------------------ helpers
    def options(values) -> tuple[int, str]:
        raw_k = values.get("k", DEFAULT_K)
        try:
            k = int(str(raw_k).strip() or DEFAULT_K)
        except ValueError:
            raise BadQuery(f"k must be a whole number, not {str(raw_k)[:20]!r}") from None
        if k < 1:
            raise BadQuery(f"k must be at least 1, not {k}")
        tag = str(values.get("tag") or "").strip()
        return k, tag

    def json_body() -> dict:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadQuery("the request needs a JSON object")
        return body

    def sentence(body: dict) -> str:
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise BadQuery("Type a sentence to search for: the search box is empty")
        if len(text) > MAX_QUERY_CHARS:
            raise BadQuery(f"The sentence is {len(text)} characters long: keep it under "
                           f"{MAX_QUERY_CHARS}")
        return text.strip()

    def image_url(path: str) -> str | None:
        if not path:
            return None
        if files.is_url(path):
            return path
        return "/image?" + _query_string(path=path)

    def result_json(result) -> dict:
        hits = result.hits[0] if result.hits else []
        return {"model": result.model, "version": result.version,
                "signature": result.signature, "k": result.k,
                "elapsed_ms": round(result.elapsed_ms, 2),
                "hits": [dict(h.as_dict(rank), image=image_url(h.path))
                         for rank, h in enumerate(hits, start=1)]}

    def timed(answer: dict, start: float) -> dict:
        answer["app_ms"] = round((time.perf_counter() - start) * 1e3, 2)
        return answer

    # ------------------------------------------------------------------ routes
    @app.get("/")
    def page():
        response = send_file(os.path.join(STATIC, "index.html"), mimetype="text/html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/api/status")
    def status():
        models = {}
        for gallery, attribute in GALLERIES.items():
            name = getattr(search, attribute)
            try:
                models[gallery] = {"model": name, "info": search.index_info(name)}
            except ServerError as e:
                models[gallery] = {"model": name,
                                   "error": server_error(e)[0].get_json()["error"]}
            except UnsupportedError as e:
                models[gallery] = {"model": name, "error": e.message}
        return jsonify(server=server, max_upload_mb=max_upload_mb, models=models)

    @app.post("/api/text")
    def text():
        start = time.perf_counter()
        body = json_body()
        query = sentence(body)
        k, tag = options(body)
        result = search.text_search(query, k=k, tag=tag)
        return jsonify(timed(dict(result_json(result), query=query), start))

    @app.post("/api/explain")
    def explain():
        start = time.perf_counter()
        body = json_body()
        query = sentence(body)
        top_id = body.get("top_id")
        if not isinstance(top_id, str) or not top_id:
            raise BadQuery("word importance needs the id of the top hit")
        return jsonify(timed(importance.explain(search, query, top_id), start))

    @app.post("/api/image")
    def image():
        start = time.perf_counter()
        upload = request.files.get("image")
        if upload is None:
            raise BadQuery("Drop a photo on the page, or choose one: no file came with the "
                           "request")
        data = upload.read()
        name = upload.filename or "the file"
        if not data:
            raise BadQuery(f"{name} is empty (zero bytes): choose a photo")
        if files.sniff_image(data) is None:
            raise BadQuery(f"{name} is not an image the model reads: give a JPEG, PNG, GIF, "
                           f"BMP or WebP photo")
        k, tag = options(request.form)
        captions = search.image_search([data], k=k)  # captions: no tag (the tag is the images')
        vector = search.embed_images([data])
        similar = search.embedding_search(vector.vectors, search.text_model, k=k, tag=tag)
        return jsonify(timed({"name": name, "captions": result_json(captions),
                              "similar": dict(result_json(similar),
                                              embed_ms=round(vector.elapsed_ms, 2))}, start))

    @app.post("/api/like")
    def like():
        start = time.perf_counter()
        body = json_body()
        item = body.get("id")
        if not isinstance(item, str) or not item:
            raise BadQuery("more like this needs a gallery id")
        gallery = body.get("gallery", "images")
        if gallery not in GALLERIES:
            raise BadQuery(f"gallery must be one of {', '.join(GALLERIES)}")
        k, tag = options(body)
        result = search.more_like_this(item, getattr(search, GALLERIES[gallery]), k=k,
                                       tag=tag if gallery == "images" else "")
        return jsonify(timed(dict(result_json(result), like=item, gallery=gallery), start))

    @app.get("/image")
    def gallery_image():
        path = request.args.get("path", "")
        try:
            real, kind = files.resolve(root, path)
        except files.Refused:
            return "refused: not an image below the gallery folder\n", 403, {
                "Content-Type": "text/plain; charset=utf-8"}
        except FileNotFoundError:
            return "no such gallery image\n", 404, {"Content-Type": "text/plain; charset=utf-8"}
        return send_file(real, mimetype=kind, max_age=3600)

    return app


def _query_string(**values) -> str:
    from urllib.parse import urlencode
    return urlencode(values)
