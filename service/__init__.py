"""What the page and the API share between sessions and requests (see :mod:`service.shared`): imported by
``ui`` and ``api``, importing neither."""

from service.reader import NotReadable, Reader
from service.shared import Service, SessionChoices, available_memory, build_service

__all__ = ["NotReadable", "Reader", "Service", "SessionChoices", "available_memory", "build_service"]
