"""/api/v1/docs is rendered on the server from the OpenAPI document and fetches nothing."""

from webapi.openapi import docs_html, document


def test_docs_page_lists_every_operation_and_loads_nothing_external():
    doc = document()
    page = docs_html(doc)
    for path, item in doc["paths"].items():
        assert f"<code>{path}</code>" in page.replace("&#x27;", "'")
        for method in item:
            if method != "parameters":
                assert f"<code>{method.upper()}</code>" in page
    assert "<script" not in page and "https://" not in page
