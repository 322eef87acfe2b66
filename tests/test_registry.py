import pytest

from difforge.errors import RegistryError
from difforge.registry import Registry


def test_duplicate_name_names_both_plugins():
    reg = Registry("rewards")
    reg.add("aesthetic", object(), owner="plugin-a")
    with pytest.raises(RegistryError) as info:
        reg.add("aesthetic", object(), owner="plugin-b")
    assert "plugin-a" in str(info.value) and "plugin-b" in str(info.value)


def test_unknown_name_lists_known_and_suggests():
    reg = Registry("samplers")
    reg.add("ddim", 1, "core")
    reg.add("ddpm", 2, "core")
    with pytest.raises(RegistryError, match=r"unknown sampler 'dddim' \(did you mean 'ddim'\?\); known: ddim, ddpm"):
        reg.get("dddim")


def test_registration_order_does_not_matter():
    a, b = Registry("metrics"), Registry("metrics")
    a.add("x", 1, "p")
    a.add("y", 2, "q")
    b.add("y", 2, "q")
    b.add("x", 1, "p")
    assert a.names() == b.names() == ["x", "y"]
    assert a.get("x") == b.get("x")


def test_remove_owner_drops_only_its_entries():
    reg = Registry("datasets")
    reg.add("a", 1, "p")
    reg.add("b", 2, "q")
    assert reg.remove_owner("p") == ["a"]
    assert reg.names() == ["b"] and reg.owned_by("q") == ["b"]
