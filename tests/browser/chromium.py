"""A Chromium window driven by Selenium, callable from the test's event loop.

The services run in the test's event loop, so every browser call runs in a thread: a
blocking WebDriver call on the loop would starve the server it waits for. Screenshots
go to ``$HEALTHWATCH_ARTIFACTS`` (default ``tests/browser/artifacts``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

ARTIFACTS = Path(
    os.environ.get("HEALTHWATCH_ARTIFACTS") or Path(__file__).resolve().parent / "artifacts"
)


class Browser:
    """One Chromium window; every call runs in a thread (see the module docstring)."""

    def __init__(self, driver: Any, base_url: str = ""):
        self.driver = driver
        self.base_url = base_url

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def get(self, path: str) -> None:
        await self._run(self.driver.get, self.base_url + path)

    async def js(self, script: str, *args: Any) -> Any:
        return await self._run(self.driver.execute_script, script, *args)

    async def fill(self, css: str, text: str) -> None:
        element = await self._run(self.driver.find_element, "css selector", css)
        await self._run(element.clear)
        await self._run(element.send_keys, text)

    async def click(self, css: str) -> None:
        element = await self._run(self.driver.find_element, "css selector", css)
        await self._run(element.click)

    async def submit(self, css: str, timeout: float = 15) -> None:
        """Click a form's button and wait until the next page has loaded."""
        await self.js("window.__hwOldPage = true")
        await self.click(css)
        deadline = asyncio.get_running_loop().time() + timeout
        while await self.js(
            "return window.__hwOldPage === true || document.readyState !== 'complete'"
        ):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no new page {timeout}s after clicking {css}")
            await asyncio.sleep(0.05)

    async def texts(self, css: str) -> list[str]:
        return list(
            await self.js(
                "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent.trim())",
                css,
            )
        )

    async def url(self) -> str:
        return str(await self._run(lambda: self.driver.current_url))

    async def title(self) -> str:
        return str(await self._run(lambda: self.driver.title))

    async def status_of_page(self) -> str:
        """The page's main heading (error pages say their status there)."""
        return " ".join(await self.texts("h1"))

    async def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        await asyncio.to_thread(ARTIFACTS.mkdir, parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        if full_page:
            height = int(await self.js("return document.documentElement.scrollHeight"))
            await self._run(self.driver.set_window_size, 1400, max(900, min(height + 200, 6000)))
        await self._run(self.driver.save_screenshot, str(path))
        await self._run(self.driver.set_window_size, 1400, 1000)
        return path

    async def sign_in(self, key: str, next_path: str = "/ui/") -> None:
        await self._run(self.driver.delete_all_cookies)
        await self.console_errors()  # start each sign-in with an empty console log
        await self.get(f"/ui/login?next={next_path}")
        await self.fill("input[name=key]", key)
        await self.submit("form[action='/ui/login'] button[type=submit]")

    async def console_errors(self) -> list[str]:
        logs = await self._run(self.driver.get_log, "browser")
        return [e["message"] for e in logs if e.get("level") == "SEVERE"]
