"""Attachments: files and images carried by messages.

Pure domain rules, no AWS SDK: which types are accepted and how big they may be, how a file name is
made safe, where an object lives ("{workspace}/{conversationId}/{uuid}/{safe-name}": nobody can guess a
key or reach another conversation's files by changing one), the reference a message carries, and the
check of a reference against the object actually stored (the real guard: an upload may have ignored its
ticket's conditions, see docs on presigned POST below).

Flow: a participant asks the api function for an upload ticket (POST /conversations/{id}/attachments with
name, contentType, size) and gets a presigned POST restricted to one key, that Content-Type and
1..limit bytes, valid UPLOAD_TTL_S; the browser posts the file straight to S3; the message frame then
carries the reference; ws_message checks every reference (key under this workspace and conversation,
the object exists, its stored size and type are the reference's) before storing the message.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_serializer, model_validator

MB = 1024 * 1024
IMAGE_MAX_BYTES = 10 * MB
FILE_MAX_BYTES = 20 * MB
MAX_PER_MESSAGE = 5
MAX_NAME_CHARS = 120  # what people see
MAX_KEY_NAME_CHARS = 80  # the key's last segment (ASCII)
UPLOAD_TTL_S = 300  # a presigned POST is valid 5 minutes
DOWNLOAD_TTL_S = 300  # and a download link as long
MAX_DIMENSION = 20_000


@dataclass(frozen=True)
class FileType:
    content_type: str
    kind: Literal["image", "file"]
    max_bytes: int
    extensions: tuple[str, ...]  # the first is the one added to a name that has none of them


_TYPES = (
    FileType("image/png", "image", IMAGE_MAX_BYTES, (".png",)),
    FileType("image/jpeg", "image", IMAGE_MAX_BYTES, (".jpg", ".jpeg", ".jfif")),
    FileType("image/gif", "image", IMAGE_MAX_BYTES, (".gif",)),
    FileType("image/webp", "image", IMAGE_MAX_BYTES, (".webp",)),
    FileType("application/pdf", "file", FILE_MAX_BYTES, (".pdf",)),
    FileType("text/plain", "file", FILE_MAX_BYTES, (".txt", ".log")),
    FileType("text/csv", "file", FILE_MAX_BYTES, (".csv",)),
    FileType("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "file", FILE_MAX_BYTES,
             (".docx",)),
    FileType("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "file", FILE_MAX_BYTES,
             (".xlsx",)),
)
# Everything else is refused, on purpose: image/svg+xml and text/html (and xhtml, xml, js) run script when
# opened from a link; archives and executables carry what we cannot look into.
ALLOWED: dict[str, FileType] = {t.content_type: t for t in _TYPES}

_KEY_NAME_RE = r"[A-Za-z0-9][A-Za-z0-9._\-]{0,%d}" % (MAX_KEY_NAME_CHARS - 1)
_KEY_RE = re.compile(r"^(?P<ws>[a-z0-9][a-z0-9-]{0,62})/(?P<cid>[A-Za-z0-9_.:\-]{1,64})/(?P<uid>[0-9a-f]{32})/"
                     rf"(?P<name>{_KEY_NAME_RE})$")


class AttachmentError(ValueError):
    """A refused attachment; the message says why in words a person can act on."""


def file_type(content_type: str) -> FileType:
    """The accepted type, or AttachmentError. Parameters (`; charset=utf-8`) and case are ignored."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    found = ALLOWED.get(base)
    if found is None:
        raise AttachmentError(f"files of type {base[:80] or '(none)'!r} cannot be attached; allowed: images "
                              "(PNG, JPEG, GIF, WebP) up to 10 MB, PDF, text, CSV, Word (.docx) and Excel (.xlsx) "
                              "up to 20 MB")
    return found


def check_upload(content_type: str, size: int) -> FileType:
    """What an upload ticket may be issued for: an accepted type within its limit (and not empty)."""
    kind = file_type(content_type)
    if size < 1:
        raise AttachmentError("the file is empty")
    if size > kind.max_bytes:
        raise AttachmentError(f"the file is {_mb(size)}; {kind.kind}s of this type may be at most "
                              f"{kind.max_bytes // MB} MB")
    return kind


def safe_name(name: str, content_type: str | None = None) -> str:
    """The file name people see: no folders, no control or direction characters (U+202E can make
    "gpj.exe" read as "exe.jpg"), single spaces, at most MAX_NAME_CHARS keeping the extension, and, given
    a type, an extension of that type (a "report.html" sent as text/plain becomes "report.html.txt", so a
    download never opens as something else)."""
    name = unicodedata.normalize("NFC", str(name or ""))
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(" " if c.isspace() else c for c in name
                   if c.isspace() or not unicodedata.category(c).startswith("C"))
    name = " ".join(name.split()).strip(" .")
    if not name:
        name = "file"
    if content_type is not None:
        kind = file_type(content_type)
        if not name.lower().endswith(kind.extensions):
            name = f"{name}{kind.extensions[0]}"
    return _shorten(name, MAX_NAME_CHARS)


def key_name(name: str) -> str:
    """The key's last segment: an ASCII slug of the (safe) name, keeping its extension."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ascii_ = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._\-]+", "-", ascii_).strip("-._")
    ext = re.sub(r"[^A-Za-z0-9]+", "", ext)[:10].lower()
    slug = slug or "file"
    result = _shorten(f"{slug}.{ext}" if ext else slug, MAX_KEY_NAME_CHARS)
    return result if re.fullmatch(_KEY_NAME_RE, result) else "file"


def prefix(workspace: str, conversation_id: str) -> str:
    """Every key of a conversation's attachments starts with this."""
    return f"{workspace}/{conversation_id}/"


def new_key(workspace: str, conversation_id: str, name: str) -> str:
    """A fresh object key: 128 random bits between the conversation and the name."""
    key = f"{prefix(workspace, conversation_id)}{secrets.token_hex(16)}/{key_name(name)}"
    if not _KEY_RE.match(key):
        raise AttachmentError("cannot make an object key for this conversation")
    return key


def owns(key: str, workspace: str, conversation_id: str) -> bool:
    """Whether `key` is a well-formed attachment key of exactly this workspace and conversation."""
    match = _KEY_RE.match(key or "")
    return bool(match) and match["ws"] == workspace and match["cid"] == conversation_id


def disposition(name: str, content_type: str) -> str:
    """Content-Disposition of a download: images inline (shown in the chat), everything else as a
    download, with the name in ASCII and in full (RFC 6266 / 5987)."""
    kind = file_type(content_type).kind
    fallback = key_name(name).replace('"', "")
    quoted = "".join(c if c.isascii() and (c.isalnum() or c in "!#$&+-.^_`|~") else
                     "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in name)
    return f"{'inline' if kind == 'image' else 'attachment'}; filename=\"{fallback}\"; filename*=UTF-8''{quoted}"


# ---------------------------------------------------------------- the reference a message carries

Key = Annotated[str, StringConstraints(min_length=1, max_length=300)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=255)]
ContentType = Annotated[str, StringConstraints(min_length=1, max_length=127)]


class AttachmentRef(BaseModel):
    """An uploaded file as a message carries it: {key, name, contentType, size} (+ width, height of an image,
    as the sender measured them; informative only)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: Key
    name: Name
    contentType: ContentType
    size: StrictInt = Field(ge=1, le=FILE_MAX_BYTES)
    width: StrictInt | None = Field(default=None, ge=1, le=MAX_DIMENSION)
    height: StrictInt | None = Field(default=None, ge=1, le=MAX_DIMENSION)

    @model_validator(mode="after")
    def _coherent(self) -> AttachmentRef:
        try:
            kind = check_upload(self.contentType, self.size)
        except AttachmentError as error:
            raise ValueError(str(error)) from None
        if kind.content_type != self.contentType:
            raise ValueError(f"contentType: write it as {kind.content_type!r}")
        if safe_name(self.name, self.contentType) != self.name:
            raise ValueError("name: not a name this server gave out (use the reference of the upload ticket)")
        if kind.kind != "image" and (self.width is not None or self.height is not None):
            raise ValueError("width and height are for images only")
        return self

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler):  # (no return annotation: the JSON schema stays the model's)
        return {k: v for k, v in handler(self).items() if v is not None}

    def public(self) -> dict:
        return self.model_dump()


def reference(key: str, name: str, content_type: str, size: int) -> AttachmentRef:
    return AttachmentRef(key=key, name=name, contentType=content_type, size=size)


# ---------------------------------------------------------------- what is stored, checked


@dataclass(frozen=True)
class StoredObject:
    size: int
    content_type: str


class AttachmentStore(Protocol):
    """The object store (S3 on AWS, moto locally)."""

    def upload_ticket(self, key: str, content_type: str, max_bytes: int, expires_s: int) -> dict:
        """{"url", "fields"}: a presigned POST for exactly this key and Content-Type, 1..max_bytes."""
        ...

    def download_url(self, key: str, content_type: str, disposition: str, expires_s: int) -> str: ...

    def head(self, key: str) -> StoredObject | None:
        """The stored object's size and type, or None when there is none."""
        ...


def verify(refs: list[AttachmentRef] | tuple[AttachmentRef, ...], workspace: str, conversation_id: str,
           store: AttachmentStore) -> list[dict]:
    """The references a message may carry, as stored with it; AttachmentError (naming the file) otherwise.

    Every key must belong to this workspace and conversation, and the object must exist with the size and
    type the reference claims, within the type's limit: the presigned POST's conditions are enforced by S3
    on AWS but not by every stand-in, and a reference is the sender's word until it is checked here."""
    if len(refs) > MAX_PER_MESSAGE:
        raise AttachmentError(f"a message carries at most {MAX_PER_MESSAGE} attachments")
    seen: set[str] = set()
    checked: list[dict] = []
    for i, ref in enumerate(refs):
        label = f"attachments.{i} ({ref.name!r})"
        if ref.key in seen:
            raise AttachmentError(f"{label}: attached twice")
        seen.add(ref.key)
        if not owns(ref.key, workspace, conversation_id):
            raise AttachmentError(f"{label}: not an upload of this conversation")
        stored = store.head(ref.key)
        if stored is None:
            raise AttachmentError(f"{label}: no such upload (it failed, or its ticket expired before it finished)")
        kind = file_type(ref.contentType)
        stored_type = (stored.content_type or "").split(";", 1)[0].strip().lower()
        if stored_type != kind.content_type:
            raise AttachmentError(f"{label}: the uploaded file's type ({stored_type or 'none'}) is not "
                                  f"{kind.content_type}")
        if stored.size != ref.size:
            raise AttachmentError(f"{label}: the uploaded file has {stored.size} bytes, not {ref.size}")
        if not 1 <= stored.size <= kind.max_bytes:
            raise AttachmentError(f"{label}: the uploaded file is {_mb(stored.size)}, over the "
                                  f"{kind.max_bytes // MB} MB limit")
        checked.append(ref.public())
    return checked


def _shorten(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if dot and 0 < len(ext) <= 10:
        return stem[: limit - len(ext) - 1].rstrip(" .") + "." + ext
    return name[:limit].rstrip(" .")


def _mb(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB else f"{size} bytes"
