"""Render report blocks (``document.py``) as Markdown (GitHub-flavoured tables, relative image links)."""
from __future__ import annotations

from hqvae.report.document import Block, BulletList, Heading, Image, Paragraph, Table


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, BulletList):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_cell(cell) for cell in block.header) + " |",
                 "|" + "|".join("---" for _ in block.header) + "|"]
        lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Image):
        return f"![{block.caption}]({block.path})"
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_markdown(blocks: list[Block]) -> str:
    """The Markdown text of ``blocks``."""
    return "\n\n".join(_block(block) for block in blocks) + "\n"
