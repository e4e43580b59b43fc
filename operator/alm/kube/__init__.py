"""The only code that talks to the Kubernetes API server (besides kopf's own watches).

``api`` is a thin typed REST layer over the ``kubernetes`` client (server-side apply
with one field manager, merge-patching status, deletes that tolerate 404);
``resources`` maps kinds to URLs; ``shell`` applies the core's plans.
"""
