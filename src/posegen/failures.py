"""What a user is told when a generation or a pose fails: a stable kind and a sentence for them.

The raw failure text (a Pillow or driver message, the address a host name resolved to, whether a
port answered) stays in ``error_detail``, for logs and admins: shown to the owner it would help
probe the network behind the workers or read internals. ``posegen.queue`` writes both columns
through :func:`public_message`, so no other code decides what the owner sees.
"""

from __future__ import annotations

#: Sentences by error kind. Kinds not listed fall back to a sentence by their prefix, then to
#: :data:`FALLBACK`; a kind is never echoed into the sentence.
SENTENCES: dict[str, str] = {
    # Loading an image (pose map or subject) from a URL or an upload.
    "blocked-address": "The image address is not allowed: it points to a private network.",
    "bad-scheme": "The image address must start with http:// or https://.",
    "bad-path": "The image path is not a valid upload.",
    "too-large": "The image is larger than the allowed size.",
    "timeout": "The image could not be downloaded in time.",
    "http-status": "The image server answered with an error.",
    "connect": "The image server could not be reached.",
    "too-many-redirects": "The image address redirects too many times.",
    "not-an-image": "The file is not an image.",
    "bad-format": "The image is not a PNG, JPEG or WebP file.",
    "too-many-pixels": "The image has more pixels than allowed.",
    "decompression-bomb": "The image is too large once decoded.",
    "truncated": "The image file is incomplete.",
    "invalid-input": "The pose could not be used.",
    "pose-missing": "The pose no longer exists.",
    "invalid-pose": "The pose could not be used.",
    "map-unavailable": "The pose's map is not available.",
    # The image backend.
    "generator-timeout": "The image backend took too long.",
    "generator-failed": "The image backend could not make this image.",
    "out-of-memory": "The image backend ran out of memory for this image.",
    "bad-output": "The image backend returned something that is not an image.",
    "workflow-invalid": "The image backend is misconfigured; an operator has been told.",
    "comfyui-unreachable": "The image backend could not be reached.",
    "comfyui-unavailable": "The image backend is not available right now.",
    "comfyui-rejected": "The image backend refused this request.",
    "comfyui-interrupted": "The image backend stopped before finishing.",
    "comfyui-execution-error": "The image backend failed while making this image.",
    "generator": "The image backend failed.",
    "backend-unavailable": "The image backend is not available right now; it will be retried.",
    "inpaint-unsupported": "This image backend cannot paint a background from a prompt.",
    # The service itself.
    "storage": "The result could not be saved.",
    "internal": "Something went wrong on our side; it will be retried.",
    "deadline-exceeded": "The generation took longer than its time limit.",
    "lease-expired": "The worker running this generation stopped; it will be retried.",
    "worker-lost": "The worker running this generation stopped; it will be retried.",
    "incomplete": "The generation stopped before every pose was made.",
    "pose-failures": "Some poses could not be made.",
    # Exports (posegen.exporting): made with a pose, or later as follow-up tasks.
    "export-failed": "The image could not be exported in the requested formats.",
    "unknown-export-format": "That export format is not offered any more.",
    # Background changes (posegen.backgrounds): follow-up tasks on one result.
    "result-not-found": "The result no longer exists.",
    "upload-not-found": "The backdrop image is not one of your uploads any more.",
    "invalid-background": "The background change could not be made with these settings.",
    "background-prompt-unsupported": "This image backend cannot repaint a background.",
    "vision-not-installed": "Background changes are not installed on this server.",
    "vision-failed": "The person could not be separated from the background; it will be retried.",
    "vision-timeout": "Separating the person from the background took too long.",
    "vision-busy": "The background service was busy; it will be retried.",
    "no-person": "No person was found in the image to keep in front of the new background.",
}
#: Sentences for a family of kinds (``subject-timeout``: the subject image timed out).
PREFIXES: dict[str, str] = {
    "subject-": "The project's subject image could not be used.",
    "comfyui-": "The image backend failed.",
}
FALLBACK = "The generation failed."


def public_message(kind: str | None) -> str | None:
    """The sentence for ``kind`` (None when there is no error)."""
    if kind is None:
        return None
    if kind in SENTENCES:
        return SENTENCES[kind]
    for prefix, sentence in PREFIXES.items():
        if kind.startswith(prefix):
            inner = SENTENCES.get(kind[len(prefix) :])
            return f"{sentence[:-1]}: {inner[0].lower()}{inner[1:]}" if inner else sentence
    return FALLBACK


def detail(message: str | None, limit: int = 4000) -> str | None:
    """The raw text kept for admins, cut to ``limit`` characters."""
    return None if message is None else message[:limit]
