"""Cross-cutting helpers that every layer may import: atomic files, stop signals, secret
redaction, gradient norms and the process-rank helpers. Nothing here imports another part of
the framework except `framework.errors`."""
