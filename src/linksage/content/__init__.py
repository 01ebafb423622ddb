"""Landing-page content: parsing, page sources, crawling, encoders and the content cache.

Modules (import the one you need; this package imports nothing heavy on its own):

- ``urltext``  text of a page that has no crawl, from its URL alone (``text_from_url``)
- ``parse``    one HTML document -> ``ParsedPage`` (title, description, main text, language,
               canonical link, images); ``encoding`` turns its bytes into text
- ``sources``  folders of HTML files and WARC files -> the ``pages`` table of the input contract
- ``crawl``    a polite, SSRF-safe live crawler -> the same ``pages`` table plus a per-URL report
- ``robots``, ``netguard``  the crawler's robots.txt cache and address checks
"""
