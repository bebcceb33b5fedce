from multiprocessing.connection import AuthenticationError as AuthenticationError
from multiprocessing.connection import answer_challenge as answer_challenge
from multiprocessing.connection import deliver_challenge as deliver_challenge
from types import TracebackType
from typing import TypeVar, Union

from . import Connection as Connection
from . import wait as wait

__all__ = [
    "families",
    "default_family",
    "Listener",
    "Client",
    "Connection",
    "wait",
    "answer_challenge",
    "deliver_challenge",
    "AuthenticationError",
]

families: list[str]
default_family: str

_Address = Union[str, tuple[str, int]]
_L = TypeVar("_L", bound="Listener")

class Listener:
    def __init__(
        self,
        address: _Address | None = None,
        family: str | None = None,
        backlog: int = 1,
        authkey: bytes | None = None,
        *,
        python_wire: bool = False,
    ) -> None: ...
    def accept(self) -> Connection: ...
    def close(self) -> None: ...
    @property
    def address(self) -> _Address | None: ...
    @property
    def last_accepted(self) -> tuple[int, int, int] | tuple[str, int] | None: ...
    def __enter__(self: _L) -> _L: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None: ...

def Client(
    address: _Address,
    family: str | None = None,
    authkey: bytes | None = None,
    *,
    python_wire: bool = False,
) -> Connection: ...
