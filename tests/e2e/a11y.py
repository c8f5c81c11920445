"""axe-core (vendored from npm in ``tests/e2e/vendor/axe-core``) run inside the test browser:
``serious_violations(driver)`` checks the page the driver shows and returns the serious and
critical findings, each with the selectors of the elements at fault."""

from __future__ import annotations

from pathlib import Path

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"


def serious_violations(driver) -> list[str]:
    # Injected through the driver (the DevTools protocol), which the page's CSP does not govern;
    # the page itself still loads no script but its own.
    driver.execute_script(AXE.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations), e => done(String(e)));")
    assert isinstance(result, list), result
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
            for v in result if v.get("impact") in ("serious", "critical")]
