"""The API's routes, one router per concern: :mod:`~vhlake.api.routes.events` (publishing),
:mod:`~vhlake.api.routes.analytics` (what the data says) and :mod:`~vhlake.api.routes.quality` (what was
quarantined or rejected, and the replay). :func:`vhlake.api.app.install_api` includes them."""
