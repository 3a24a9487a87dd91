"""The aiohttp node (`hn mcp serve`): app factory, routes, request signatures, limits, state."""
