"""Web tools of the 4.45 agents docs: a DuckDuckGo search and a page visit that returns Markdown.

Both need the network and an optional package (`duckduckgo-search`, `markdownify`); without the package
they raise an error that names it.
"""
from __future__ import annotations

import re
import urllib.error
import urllib.request

from .tools import Tool, ToolError


class DuckDuckGoSearchTool(Tool):
    name = "web_search"
    description = ("Runs a web search for the query and returns the top results as a list of dicts with the keys "
                   "'title', 'href' and 'body'.")
    inputs = {"query": {"type": "string", "description": "The search query to perform."}}
    output_type = "any"

    def forward(self, query: str):
        try:
            from duckduckgo_search import DDGS
        except ImportError as error:
            raise ToolError("web_search needs the duckduckgo-search package: pip install duckduckgo-search") from error
        return DDGS().text(query, max_results=7)


class VisitWebpageTool(Tool):
    name = "visit_webpage"
    description = "Visits a webpage at the given url and returns its content as a markdown string."
    inputs = {"url": {"type": "string", "description": "The url of the webpage to visit."}}
    output_type = "string"

    def __init__(self, *args, timeout: float = 20.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.timeout = timeout

    def forward(self, url: str) -> str:
        try:
            from markdownify import markdownify
        except ImportError as error:
            raise ToolError("visit_webpage needs the markdownify package: pip install markdownify") from error
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                charset = response.headers.get_content_charset() or "utf-8"
                html = response.read().decode(charset, errors="replace")
        except (urllib.error.URLError, ValueError, TimeoutError) as error:
            return f"Error fetching the webpage: {error}"
        return re.sub(r"\n{3,}", "\n\n", markdownify(html).strip())
