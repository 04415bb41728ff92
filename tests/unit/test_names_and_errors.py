import pytest

from archipel.errors import ArchipelError, InvalidArgument, NotFound, error_for_code
from archipel.names import check_dataset_name


@pytest.mark.parametrize("name", ["gaia_dr3.source", "ztf.dr20.objects", "t", "_x.y_1"])
def test_good_names(name):
    assert check_dataset_name(name) == name


@pytest.mark.parametrize("name,why", [
    ("", "empty"), ("a/b", "path separator"), ("..", "empty part"), ("a..b", "empty part"),
    ("x'y", "quote"), ("a.b.c.d", "more than three"), ("1a", "letters"), (None, "empty"), ("a b", "letters"),
])
def test_bad_names(name, why):
    with pytest.raises(InvalidArgument, match=why):
        check_dataset_name(name)


def test_error_hierarchy_maps_codes_and_builtins():
    err = error_for_code("NOT_FOUND", "unknown dataset 'x'")
    assert isinstance(err, NotFound) and isinstance(err, LookupError) and str(err) == "unknown dataset 'x'"
    assert isinstance(error_for_code("PERMISSION_DENIED", "no"), PermissionError)
    assert type(error_for_code("WHATEVER", "m")) is ArchipelError


def test_a_status_a_method_set_itself_is_not_turned_into_internal():
    """``context.abort`` inside a servicer method (Hello refusing a protocol version, say)
    raises a bare Exception after setting the status: the rpc edge keeps that status."""
    import grpc

    from island.rpc import peer_rpc

    class Context:
        def __init__(self):
            self._code, self.details = None, ""

        def code(self):
            return self._code

        def abort(self, code, details):
            self._code, self.details = code, details
            raise Exception()  # what grpc's abort raises

    class Gate:
        def grpc_island(self, context):
            return "b"

    class Servicer:
        gate = Gate()

        @peer_rpc
        def Hello(self, request, context, island):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "speaks protocol 1, not 99")

    ctx = Context()
    try:
        Servicer().Hello(None, ctx)
    except Exception:
        pass
    assert (ctx.code(), ctx.details) == (grpc.StatusCode.FAILED_PRECONDITION, "speaks protocol 1, not 99")
