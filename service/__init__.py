"""What the page and the API share between sessions and requests (see :mod:`service.core`): imported by
``ui`` and ``api``, importing neither."""

from service.core import Service, SessionChoices, available_memory, build_service
from service.reader import NotReadable, Reader

__all__ = ["NotReadable", "Reader", "Service", "SessionChoices", "available_memory", "build_service"]
