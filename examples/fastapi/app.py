"""Thumbnails over HTTP: a FastAPI app in front of a kiln worker.

The web side is ordinary Celery: it queues `image.thumbnail` with send_task
and reads the state Celery's result backend holds.  Nothing here imports
kiln; the worker that runs the task (`kiln worker --config kiln.json`) could
as well be a Python Celery worker with the same task name.

    POST /images            multipart upload (field "file", optional "width",
                            "height", "format"): 202 {"task_id", "status_url"}
    GET  /tasks/{task_id}   {"state", "progress", "result", "error", "output"}
    GET  /thumbnails/{name} the thumbnail, once its task has succeeded
    GET  /health            liveness, no I/O

No endpoint waits for the work: the upload answers 202 as soon as the file
is on disk and the task is queued, and the status endpoint reads the state
once (the meta behind AsyncResult.state and .info, never .get()).

Environment (read once, at import):
    KILN_BROKER_URL or CELERY_BROKER_URL   broker (default redis://127.0.0.1:6379/0)
    CELERY_RESULT_BACKEND                  result backend (default: the broker)
    KILN_MEDIA_DIR                         media directory, the worker's root
                                           (default /var/lib/kiln-fastapi): uploads
                                           go to in/, thumbnails to out/
    KILN_QUEUE                             queue to send to (default celery)
    KILN_MAX_UPLOAD                        largest upload, bytes or 50M / 1G
                                           (default 50M); 413 beyond
Run: uvicorn app:app --app-dir examples/fastapi (see README.md).
"""

import logging
import os
import re
import uuid

from celery import Celery
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

try:  # python-multipart >= 0.0.13 renamed its module
    from python_multipart.exceptions import ParseError
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # Debian bookworm: 0.0.5
    from multipart.exceptions import ParseError
    from multipart.multipart import MultipartParser, parse_options_header

TASK = "image.thumbnail"
FORMATS = {"jpeg": "jpg", "png": "png", "webp": "webp"}  # output format -> extension
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
INPUT_EXTS = {"jpg", "jpeg", "png", "webp"}  # kept on the stored upload; others become .bin
DEFAULT_SIDE = 256
MAX_SIDE = 4096  # largest thumbnail width or height accepted
FIELD_MAX = 256  # bytes of one text field
FIELDS_MAX = 16  # text fields in one upload
FLUSH = 1 << 20  # upload bytes gathered before one write to disk
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TASK_ID_RE = re.compile(UUID)
THUMB_RE = re.compile("(?P<id>%s)\\.(?P<ext>jpg|png|webp)" % UUID)


def env_size(name, default):
    """A byte count from the environment: 1048576, 512K, 50M, 1G."""
    text = os.environ.get(name, default).strip()
    m = re.fullmatch(r"([0-9]+)([KMG]?)i?B?", text, re.IGNORECASE)
    if not m or int(m.group(1)) == 0:
        raise SystemExit('%s: "%s" is not a positive size (e.g. 50M)' % (name, text))
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


BROKER = (os.environ.get("KILN_BROKER_URL") or os.environ.get("CELERY_BROKER_URL")
          or "redis://127.0.0.1:6379/0")
BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or BROKER
MEDIA = os.path.abspath(os.environ.get("KILN_MEDIA_DIR") or "/var/lib/kiln-fastapi")
QUEUE = os.environ.get("KILN_QUEUE") or "celery"
MAX_UPLOAD = env_size("KILN_MAX_UPLOAD", "50M")
MAX_BODY = MAX_UPLOAD + 64 * 1024  # the file plus the multipart framing and fields
IN_DIR = os.path.join(MEDIA, "in")
OUT_DIR = os.path.join(MEDIA, "out")
for d in (IN_DIR, OUT_DIR):
    os.makedirs(d, mode=0o755, exist_ok=True)

RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
celery_app = Celery("kiln-fastapi", broker=BROKER, backend=BACKEND, set_as_current=False)
celery_app.conf.update(
    task_serializer="json", result_serializer="json", accept_content=["json"],
    result_accept_content=["json"],
    # A broker that is down costs an upload a few seconds and a 503, not a hang.
    broker_connection_timeout=5, broker_connection_retry_on_startup=False,
    broker_transport_options={"socket_timeout": 5, "socket_connect_timeout": 5},
    task_publish_retry_policy=RETRY,
    result_backend_transport_options={"retry_policy": RETRY},
    redis_socket_timeout=5, redis_socket_connect_timeout=5)

app = FastAPI(title="kiln thumbnails")
log = logging.getLogger("uvicorn.error")  # uvicorn shows it with its own lines


class Upload:
    """One multipart/form-data body, streamed as it arrives: the part named
    "file" to <media>/in/<task id>.<ext> (created exclusively, written from
    the threadpool in FLUSH-sized pieces), the small text fields kept."""

    def __init__(self, task_id):
        self.task_id = task_id
        self.fields = {}
        self.filename = None
        self.path = None
        self.size = 0
        self._fh = None
        self._pending = []
        self._pending_len = 0
        self._part = None  # field name of the current part
        self._is_file = False
        self._value = bytearray()
        self._header = [b"", b""]
        self._disposition = b""

    # --- python-multipart callbacks (run in the event loop: no I/O here) -----

    def _part_begin(self):
        self._part, self._is_file, self._disposition = None, False, b""
        self._value = bytearray()

    def _header_field(self, data, start, end):
        self._header[0] += data[start:end]

    def _header_value(self, data, start, end):
        self._header[1] += data[start:end]

    def _header_end(self):
        if self._header[0].lower() == b"content-disposition":
            self._disposition = self._header[1]
        self._header = [b"", b""]

    def _headers_finished(self):
        _, opts = parse_options_header(self._disposition)
        if b"name" not in opts:
            raise HTTPException(400, 'a form part has no Content-Disposition "name"')
        self._part = opts[b"name"].decode("utf-8", "replace")
        if b"filename" not in opts:
            if len(self.fields) >= FIELDS_MAX:
                raise HTTPException(422, "more than %d form fields" % FIELDS_MAX)
            return
        if self._part != "file":
            raise HTTPException(422, 'unexpected file field "%s" (the image goes in "file")'
                                % self._part)
        if self.filename is not None:
            raise HTTPException(422, 'more than one "file" part')
        self._is_file = True
        self.filename = opts[b"filename"].decode("utf-8", "replace")
        ext = os.path.splitext(self.filename)[1].lower().lstrip(".")
        self.path = os.path.join(IN_DIR, "%s.%s" % (self.task_id,
                                                    ext if ext in INPUT_EXTS else "bin"))

    def _part_data(self, data, start, end):
        n = end - start
        if not self._is_file:
            if len(self._value) + n > FIELD_MAX:
                raise HTTPException(422, 'form field "%s" is longer than %d bytes'
                                    % (self._part, FIELD_MAX))
            self._value += data[start:end]
            return
        self.size += n
        if self.size > MAX_UPLOAD:
            raise HTTPException(413, "upload is larger than %d bytes" % MAX_UPLOAD)
        self._pending.append(data[start:end])
        self._pending_len += n

    def _part_end(self):
        if not self._is_file:
            self.fields[self._part] = self._value.decode("utf-8", "replace")

    # --- disk (threadpool) ---------------------------------------------------

    def _write(self, data):
        if self._fh is None:
            self._fh = open(self.path, "xb")
        self._fh.write(data)

    def _close(self):
        if self._fh is not None:
            self._fh.close()

    def discard(self):
        """Remove what was written: the upload failed or was not queued."""
        self._close()
        if self._fh is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    async def _flush(self):
        data = b"".join(self._pending)
        self._pending, self._pending_len = [], 0
        await run_in_threadpool(self._write, data)

    async def receive(self, stream, boundary):
        parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data,
            "on_part_end": self._part_end, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished})
        total = 0
        try:
            async for chunk in stream:
                total += len(chunk)
                if total > MAX_BODY:
                    raise HTTPException(413, "upload is larger than %d bytes" % MAX_UPLOAD)
                parser.write(chunk)
                if self._pending_len >= FLUSH:
                    await self._flush()
            parser.finalize()
        except ParseError as e:
            raise HTTPException(400, "malformed multipart body: %s" % e)
        if self.filename is None:
            raise HTTPException(422, 'no "file" part in the upload')
        if self.size == 0:
            raise HTTPException(422, 'the uploaded file "%s" is empty' % self.filename)
        await self._flush()
        await run_in_threadpool(self._close)

    def task_kwargs(self):
        """image.thumbnail's kwargs from the form fields, or 422."""
        width = self._side("width", DEFAULT_SIDE)
        height = self._side("height", width)
        fmt = self.fields.get("format", "jpeg").strip().lower() or "jpeg"
        if fmt == "jpg":
            fmt = "jpeg"
        if fmt not in FORMATS:
            raise HTTPException(422, 'format "%s" is not one of jpeg, png, webp' % fmt)
        out = os.path.join(OUT_DIR, "%s.%s" % (self.task_id, FORMATS[fmt]))
        return {"files": {"input": self.path}, "outputs": {"output": out},
                "width": width, "height": height, "format": fmt}

    def _side(self, name, default):
        text = self.fields.get(name, "").strip()
        if not text:
            return default
        if not text.isdigit() or not 1 <= int(text) <= MAX_SIDE:
            raise HTTPException(422, '%s "%s" is not an integer in 1..%d' % (name, text, MAX_SIDE))
        return int(text)


def queue_thumbnail(task_id, kwargs):
    """Publish the task (blocking network I/O: called from the threadpool)."""
    celery_app.send_task(TASK, kwargs=kwargs, task_id=task_id, queue=QUEUE)


def read_state(task_id):
    """(state, info) as Celery's result backend holds them now, without
    waiting: what AsyncResult(task_id).state and .info return, but from one
    read, so that the two belong together (.state then .info are two reads,
    and a task that finishes between them shows PROGRESS with its result)."""
    try:
        meta = celery_app.backend.get_task_meta(task_id)
        return meta["status"], meta["result"]
    except Exception as e:  # backend unreachable, or a result that does not decode
        log.warning("cannot read the state of task %s: %s", task_id, e)
        raise HTTPException(503, "result backend: cannot read task %s: %s" % (task_id, e))


def error_of(exc):
    """{"type", "message"} of a task's exception, as Celery rebuilt it; the
    server's media path is cut from the message (in/<id>.jpg, not /var/...)."""
    if isinstance(exc, BaseException):
        kind = type(exc).__name__
        message = str(exc.args[0] if len(exc.args) == 1 else exc)
    else:
        kind, message = "Exception", str(exc)
    return {"type": kind, "message": message.replace(MEDIA + os.sep, "")}


@app.post("/images", status_code=202)
async def create_thumbnail(request: Request):
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise HTTPException(415, "send the image as multipart/form-data, field \"file\"")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        raise HTTPException(413, "upload is larger than %d bytes" % MAX_UPLOAD)
    task_id = str(uuid.uuid4())
    upload = Upload(task_id)
    try:
        await upload.receive(request.stream(), params[b"boundary"])
        kwargs = upload.task_kwargs()
        try:
            await run_in_threadpool(queue_thumbnail, task_id, kwargs)
        except Exception as e:
            log.warning("cannot queue %s[%s]: %s", TASK, task_id, e)
            raise HTTPException(503, "broker: cannot queue %s: %s" % (TASK, e))
    except BaseException as e:
        # Here, not in the threadpool: a cancelled request cannot await.  A
        # close and an unlink, on an error path only.
        upload.discard()
        if isinstance(e, ClientDisconnect):  # nobody to answer; no traceback in the log
            log.info("upload %s: the client went away after %d bytes", task_id, upload.size)
            return Response(status_code=400)
        raise
    status_url = str(request.url_for("task_status", task_id=task_id))
    return JSONResponse({"task_id": task_id, "status_url": status_url}, status_code=202,
                        headers={"Location": status_url})


@app.get("/tasks/{task_id}", name="task_status")
def task_status(task_id: str, request: Request):
    if not TASK_ID_RE.fullmatch(task_id):
        raise HTTPException(404, 'no task "%s" (task ids are UUIDs)' % task_id)
    state, info = read_state(task_id)
    body = {"state": state, "progress": None, "result": None, "error": None, "output": None}
    if state == "PROGRESS" and isinstance(info, dict):
        fraction = info.get("fraction")
        if isinstance(fraction, (int, float)):
            body["progress"] = float(fraction)
    elif state == "SUCCESS":
        body["progress"] = 1.0
        body["result"] = info
        ext = FORMATS.get(info.get("format")) if isinstance(info, dict) else None
        if ext:
            body["output"] = str(request.url_for("thumbnail", name="%s.%s" % (task_id, ext)))
    elif state in ("FAILURE", "RETRY") and info is not None:
        body["error"] = error_of(info)  # RETRY: why the last attempt failed
    return body


@app.get("/thumbnails/{name}", name="thumbnail")
def thumbnail(name: str):
    m = THUMB_RE.fullmatch(name)
    if not m:
        raise HTTPException(404, 'no thumbnail "%s"' % name)
    # The worker creates the output file when the task starts: serve it only
    # once the task has succeeded, never half-written or after a failure.
    state, _ = read_state(m["id"])
    path = os.path.join(OUT_DIR, name)
    if state != "SUCCESS" or not os.path.isfile(path):
        raise HTTPException(404, 'no thumbnail "%s" (task state %s)' % (name, state))
    return FileResponse(path, media_type=MEDIA_TYPES[m["ext"]])


@app.get("/health")
async def health():
    return {"status": "ok"}
