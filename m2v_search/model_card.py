"""Render the README.md model card of a saved model from the package's template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"


def render_model_card(
    *,
    model_name: str,
    base_model: str | None,
    dim: int,
    vocabulary_size: int,
    dtype: str,
    normalize: bool,
    license: str = "mit",
    language: list[str] | None = None,
    recipe: dict[str, Any] | None = None,
) -> str:
    """The model card text: YAML front matter, then the sections of the template."""
    import jinja2
    import yaml

    card_data: dict[str, Any] = {"model_name": model_name}
    if base_model:
        card_data["base_model"] = base_model
    if language:
        card_data["language"] = language
    card_data.update(
        {
            "license": license,
            "library_name": "model2vec",
            "tags": ["embeddings", "static-embeddings", "sentence-transformers", "m2v-search", "model2vec"],
        }
    )
    environment = jinja2.Environment(autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(TEMPLATE.read_text(encoding="utf-8"))
    return template.render(
        card_data=yaml.safe_dump(card_data, sort_keys=False, allow_unicode=True).strip(),
        model_name=model_name,
        base_model=base_model,
        dim=dim,
        vocabulary_size=vocabulary_size,
        dtype=dtype,
        normalize=normalize,
        recipe=recipe or {},
    )
