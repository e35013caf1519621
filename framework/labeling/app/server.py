"""The labeling app on FastAPI.

Pages (signed in by a cookie that holds the account's token, set from its secret link):
  /login        sign in with a token or a secret link (/login?token=...)
  /             the labeler's progress, or the admin page for the admin
  /next         the labeler's next task
  /task/ID      a task: rank (drag and drop, or the keyboard), score 1-7, flag, edit, critique,
                or skip; POST submits it
  /admin        progress, throughput per labeler, agreement on the shared tasks
JSON API (Authorization: Bearer TOKEN): GET /api/next, GET /api/tasks/ID,
POST /api/tasks/ID/label, GET /api/progress (admin).

Form posts carry an anti-forgery token tied to the account, the cookie is SameSite=Strict and
HttpOnly, and a cross-origin Origin header is refused. Templates escape every text. Bodies over
`max_body_bytes` are refused before they are read whole."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from framework.labeling import accounts as tokens
from framework.labeling.agreement import pairwise_agreement
from framework.labeling.app.submission import (
    SubmissionError, display_order, from_form, from_json, to_label)
from framework.labeling.store import ADMIN, LABELER, Account, LabelStore, StoreError
from framework.labeling.tasks import FLAGS, check_label
from framework.errors import DataError

HERE = Path(__file__).parent
COOKIE = "labeling_token"
INSTRUCTGPT_AGREEMENT = 0.726  # Ouyang et al. 2022, among the trained labelers
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
    # a Referer (and so a secret link) never leaves the app; "no-referrer" would also make
    # browsers send "Origin: null" on the app's own form posts, which the origin check refuses
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store"}


class Refused(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message
        super().__init__(message)


def create_app(store: LabelStore, *, max_body_bytes: int = 256 * 1024) -> FastAPI:
    app = FastAPI(title="rlhf-framework labeling", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    pages = Jinja2Templates(directory=HERE / "templates")
    secret = store.settings()["secret"]

    @app.middleware("http")
    async def headers(request: Request, call_next):
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_body_bytes:
            response = _refusal(request, 413, f"the submission is {int(length)} bytes, more than "
                                              f"the {max_body_bytes} allowed; shorten the texts.")
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        return _refusal(request, exc.status, exc.message)

    def _refusal(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        return pages.TemplateResponse(request, "error.html", {"status": status,
                                                              "message": message,
                                                              "account": None},
                                      status_code=status)

    def page(request: Request, name: str, account: Optional[Account], **values) -> HTMLResponse:
        csrf = tokens.form_token(secret, account.name) if account else ""
        return pages.TemplateResponse(request, name, {"account": account, "csrf": csrf,
                                                      **values})

    # --- who is asking

    def cookie_account(request: Request) -> Account:
        account = store.account_for_token(request.cookies.get(COOKIE, ""))
        if account is None:
            raise Refused(401, "You are not signed in, or your link was replaced. Open the link "
                               "you were given, or sign in at /login.")
        return account

    def bearer_account(request: Request) -> Account:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        account = store.account_for_token(value) if scheme.lower() == "bearer" else None
        if account is None:
            raise Refused(401, "missing, unknown or replaced token: send "
                               "'Authorization: Bearer TOKEN' with a labeler's token.")
        return account

    def labeler_only(account: Account) -> Account:
        if account.role != LABELER:
            raise Refused(403, f"{account.name} is an admin account; tasks are labeled by "
                               f"labeler accounts.")
        return account

    async def form_of(request: Request, account: Optional[Account]) -> dict[str, list[str]]:
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise Refused(403, f"a form posted from {origin} is refused: forms are accepted "
                               f"from this app's own pages only.")
        if request.headers.get("content-type", "").split(";")[0] != \
                "application/x-www-form-urlencoded":
            raise Refused(415, "send the form as application/x-www-form-urlencoded.")
        raw = await _body(request)
        try:
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                            max_num_fields=1000)
        except (UnicodeDecodeError, ValueError) as exc:
            raise Refused(400, f"the form could not be read ({exc}).") from None
        if account is not None and not tokens.form_token_ok(secret, account.name,
                                                            (form.get("csrf") or [""])[0]):
            raise Refused(403, "this form's anti-forgery token is missing or wrong (a form "
                               "from another site, or a page of another account). Reload the "
                               "page and submit again.")
        return form

    async def _body(request: Request) -> bytes:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_body_bytes:
                raise Refused(413, f"the submission is more than the {max_body_bytes} bytes "
                                   f"allowed; shorten the texts.")
        return raw

    def assigned_task(task_id: str, account: Account):
        task = store.task(task_id)
        if task is None or not store.is_assigned(task_id, account.name):
            raise Refused(403, f"task {task_id} is not assigned to {account.name}.")
        return task

    def store_label(sub_of, task_id: str, account: Account):
        task = assigned_task(task_id, account)
        order = display_order(task, account.name, secret)
        allow_ties = store.settings().get("allow_ties", True)
        try:
            label = to_label(sub_of(len(task.responses)), task, order, account.name, allow_ties)
            check_label(label, task, "submission", allow_ties)
            store.submit(label)
        except (SubmissionError, DataError) as exc:
            raise Refused(400, f"task {task_id} was not saved: {exc}") from None
        except StoreError as exc:
            raise Refused(409, str(exc)) from None
        return label

    # --- pages

    @app.get("/health")
    def health():
        return {"ok": True}

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, token: str = ""):
        if token:
            return sign_in(token)
        return page(request, "login.html", None)

    @app.post("/login")
    async def login(request: Request):
        form = await form_of(request, None)
        return sign_in((form.get("token") or [""])[0].strip())

    def sign_in(token: str):
        if store.account_for_token(token) is None:
            raise Refused(401, "This link or token is not valid: it may have been mistyped or "
                               "replaced. Ask the run's owner for a new link.")
        response = RedirectResponse("/", status_code=303)  # the token leaves the address bar
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    @app.post("/logout")
    async def logout(request: Request):
        await form_of(request, cookie_account(request))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request):
        account = cookie_account(request)
        if account.role == ADMIN:
            return RedirectResponse("/admin", status_code=303)
        mine = store.assigned(account.name)
        done = {r.label.task_id for r in store.records() if r.label.labeler == account.name}
        return page(request, "home.html", account, assigned=len(mine), done=len(done),
                    settings=store.settings())

    @app.get("/next")
    def next_task(request: Request):
        account = labeler_only(cookie_account(request))
        task_id = store.next_task(account.name)
        if task_id is None:
            return RedirectResponse("/?done=1", status_code=303)
        return RedirectResponse(f"/task/{quote(task_id)}", status_code=303)

    @app.get("/task/{task_id}", response_class=HTMLResponse)
    def task_page(request: Request, task_id: str):
        account = labeler_only(cookie_account(request))
        task = assigned_task(task_id, account)
        submitted = store.label(task_id, account.name)
        order = display_order(task, account.name, secret)
        settings = store.settings()
        messages = (task.prompt if isinstance(task.prompt, list)
                    else [{"role": "user", "content": str(task.prompt)}])
        return page(request, "task.html", account, task=task, messages=messages,
                    shown=[task.responses[i] for i in order], flags=FLAGS,
                    allow_ties=settings.get("allow_ties", True),
                    instructions=settings.get("instructions", ""), submitted=submitted)

    @app.post("/task/{task_id}")
    async def submit_page(request: Request, task_id: str):
        account = labeler_only(cookie_account(request))
        form = await form_of(request, account)
        store_label(lambda k: from_form(form, k), task_id, account)
        return RedirectResponse("/next", status_code=303)

    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: Request):
        account = cookie_account(request)
        if account.role != ADMIN:
            raise Refused(403, "the admin page needs the admin token "
                               "(python -m framework label RUN_DIR --admin-token).")
        return page(request, "admin.html", account, **admin_figures(store),
                    reference=INSTRUCTGPT_AGREEMENT)

    # --- JSON API

    @app.get("/api/next")
    def api_next(request: Request):
        account = labeler_only(bearer_account(request))
        task_id = store.next_task(account.name)
        return {"task": None} if task_id is None else {"task": task_json(task_id, account)}

    @app.get("/api/tasks/{task_id}")
    def api_task(request: Request, task_id: str):
        account = labeler_only(bearer_account(request))
        return {"task": task_json(task_id, account)}

    def task_json(task_id: str, account: Account) -> dict:
        task = assigned_task(task_id, account)
        order = display_order(task, account.name, secret)
        return {"task_id": task.task_id, "prompt": task.prompt,
                "responses": [task.responses[i] for i in order],
                "allow_ties": store.settings().get("allow_ties", True), "flags": list(FLAGS)}

    @app.post("/api/tasks/{task_id}/label")
    async def api_label(request: Request, task_id: str):
        account = labeler_only(bearer_account(request))
        try:
            body = json.loads(await _body(request))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Refused(400, f"the body is not JSON ({exc}).") from None
        label = store_label(lambda k: from_json(body, k), task_id, account)
        return {"saved": label.to_json()}

    @app.get("/api/progress")
    def api_progress(request: Request):
        account = bearer_account(request)
        if account.role != ADMIN:
            raise Refused(403, "progress is for the admin token.")
        figures = admin_figures(store)
        figures["agreement_pairs"] = [{"labelers": list(k), **v} for k, v in
                                      figures["agreement_pairs"].items()]
        return figures

    return app


def admin_figures(store: LabelStore) -> dict:
    """Progress, per-labeler throughput and agreement, for the admin page and API."""
    records = store.records()
    progress = store.progress()
    labelers = []
    for account in store.accounts():
        if account.role != LABELER:
            continue
        mine = [r for r in records if r.label.labeler == account.name]
        times = [r.submitted_at for r in mine]
        span_h = (max(times) - min(times)) / 3600 if len(times) > 1 else 0.0
        seconds = [r.seconds for r in mine if r.seconds is not None]
        labelers.append({
            "name": account.name, "assigned": len(store.assigned(account.name)),
            "labels": len(mine), "skipped": sum(1 for r in mine if r.label.skipped),
            "median_seconds": round(statistics.median(seconds), 1) if seconds else None,
            # labels per hour between the first and the last submission
            "per_hour": round((len(mine) - 1) / span_h, 1) if span_h > 0 else None})
    overall, pairs = pairwise_agreement([r.label for r in records])
    return {"progress": progress.__dict__, "labelers": labelers,
            "agreement": {"agreed": overall.agreed, "compared": overall.compared,
                          "rate": overall.rate},
            "agreement_pairs": {k: {"agreed": v.agreed, "compared": v.compared, "rate": v.rate}
                                for k, v in pairs.items()}}
