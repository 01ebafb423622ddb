"""Incremental days: ``linksage update`` appends a day's input and re-embeds only what changed (docs/update.md)."""
