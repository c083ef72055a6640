"""``m2v-index serve``: the HTTP server (m2v_search.server) as a subcommand."""

from __future__ import annotations

from m2v_search.cli.groups import INDEX
from m2v_search.server.cli import add_serve_arguments, run_serve

INDEX.command("serve", help="serve INDEX over HTTP: search, upserts, OpenAI-compatible /v1/embeddings",
              options=("common",), arguments=add_serve_arguments)(run_serve)
