import pytest

from simsearch import errors as E


@pytest.mark.parametrize(
    "cls, builtin",
    [
        (E.InvalidArgumentError, ValueError),
        (E.InvalidTypeError, TypeError),
        (E.NotFoundError, KeyError),
        (E.AlreadyExistsError, ValueError),
        (E.FailedPreconditionError, RuntimeError),
        (E.ResourceExhaustedError, ValueError),
        (E.StorageCorruptionError, RuntimeError),
        (E.NotFittedError, AttributeError),
        (E.NotFittedError, ValueError),
        (E.BackendUnavailableError, ImportError),
    ],
)
def test_each_error_is_also_the_builtin(cls, builtin):
    assert issubclass(cls, E.SimsearchError)
    assert issubclass(cls, builtin)
    with pytest.raises(builtin):
        raise cls("boom")


def test_not_found_message_is_not_quoted():
    assert str(E.NotFoundError("collection 'x' does not exist")) == "collection 'x' does not exist"


@pytest.mark.parametrize("cls", sorted(E.GRPC_STATUS, key=lambda c: c.__name__))
def test_status_table_round_trips_every_class(cls):
    status = E.status_for_exception(cls("m"))
    assert status == E.GRPC_STATUS[cls]
    back = E.error_for_status(status, "m", cls.__name__)
    assert type(back) is cls and str(back) == "m"


def test_unknown_errors_are_internal_and_unknown_classes_fall_back_to_status():
    assert E.status_for_exception(ZeroDivisionError()) == "INTERNAL"
    assert type(E.error_for_status("NOT_FOUND", "x", "NoSuchClass")) is E.NotFoundError
    # a class name that disagrees with the status is not trusted
    assert type(E.error_for_status("NOT_FOUND", "x", "InvalidArgumentError")) is E.NotFoundError
