"""The three name registries (component kinds, tasks, baseline policies) share one pattern,
:class:`medreward.registry.Registry`: decorator registration, lazy built-ins, a user error that
lists the known names, and no silent shadowing of a taken name."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import pytest

from medreward.baselines import base as baselines_base
from medreward.baselines import get_policy, register_policy
from medreward.errors import MedrewardError, SpecError
from medreward.registry import Registry
from medreward.rewards import base as rewards_base
from medreward.rewards import component_class, registered_kinds
from medreward.tasks import UnknownNameError, get_task, list_tasks, register_task
from medreward.tasks import base as tasks_base


# -- the generic class ---------------------------------------------------------------------
def test_unknown_name_lists_the_known_ones_with_hint_and_context():
    reg = Registry[str, int]("widget", "widgets", package="", builtins=(), error=SpecError, hint=" (see docs)")
    reg.add("b", 2)
    reg.add("a", 1)
    with pytest.raises(SpecError, match=r"^unknown widget 'c'; known widgets: a, b \(see docs\)$"):
        reg.get("c")
    err = reg.unknown("c", [], context=" for task 'x'")
    assert str(err) == "unknown widget 'c' for task 'x'; known widgets: none (see docs)"
    assert list(reg.entries()) == ["a", "b"]


def test_the_same_entry_again_is_a_no_op_a_different_one_is_an_error():
    reg = Registry[str, int]("widget", "widgets", package="", builtins=(), error=LookupError)
    reg.add("a", 1)
    reg.add("a", 1)  # a module imported twice
    with pytest.raises(TypeError, match="widget 'a' is registered twice"):
        reg.add("a", 2)
    assert reg.get("a") == 1


def test_builtins_load_on_first_lookup_once_and_a_failed_import_is_retried(tmp_path, monkeypatch):
    pkg = tmp_path / "regpkg_builtins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from medreward.registry import Registry\nREG = Registry('thing', 'things', package=__name__,"
        " builtins=('one', 'two'), error=LookupError)\nIMPORTS = []\n"
    )
    (pkg / "one.py").write_text("from . import REG, IMPORTS\nIMPORTS.append('one')\nREG.add('one', 1)\n")
    (pkg / "two.py").write_text("raise ImportError('not yet')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import regpkg_builtins as package

    try:
        assert package.IMPORTS == []  # nothing imported until a lookup
        with pytest.raises(ImportError, match="not yet"):
            package.REG.get("one")
        (pkg / "two.py").write_text("from . import REG\nREG.add('two', 2)\n")
        sys.modules.pop("regpkg_builtins.two", None)
        assert package.REG.entries() == {"one": 1, "two": 2}  # retried after the failure
        assert package.IMPORTS == ["one"]
    finally:
        for name in [m for m in sys.modules if m.startswith("regpkg_builtins")]:
            del sys.modules[name]


# -- the three registries --------------------------------------------------------------------
def test_the_three_registries_are_one_class():
    for registry in (rewards_base._COMPONENTS, tasks_base._TASKS, baselines_base._POLICIES):
        assert isinstance(registry, Registry)


@pytest.mark.parametrize(
    ("lookup", "error", "message"),
    [
        (lambda: component_class("nope"), SpecError,
         r"^unknown component kind 'nope'; known kinds: (\w[\w.]*, )*choice, classification, (\w[\w.]*, )*format\.tags, .*"
         r" \(or give a custom one as 'package\.module:ClassName'\)$"),
        (lambda: get_task("nope"), UnknownNameError, r"^unknown task 'nope'; known tasks: calculator, icd_coding, mcq, toxicology$"),
        (lambda: get_policy("mcq", "nope"), UnknownNameError,
         r"^unknown policy 'nope' for task 'mcq'; known policies: always_a, keyword_overlap, random$"),
        (lambda: get_policy("nope", "x"), UnknownNameError, r"^unknown policy 'x' for task 'nope'; known policies: none$"),
    ],
)
def test_unknown_names_are_user_errors_that_list_the_known_ones(lookup, error, message):
    with pytest.raises(error, match=message) as info:
        lookup()
    assert isinstance(info.value, MedrewardError)  # the CLI prints it, no traceback


def test_a_task_or_policy_name_cannot_be_silently_shadowed(monkeypatch):
    # work on copies so the process-wide registries stay as they were
    monkeypatch.setattr(tasks_base._TASKS, "_entries", dict(tasks_base._TASKS.entries()))
    monkeypatch.setattr(baselines_base._POLICIES, "_entries", dict(baselines_base._POLICIES.entries()))
    toxicology = list_tasks()["toxicology"]
    with pytest.raises(TypeError, match="task 'toxicology' is registered twice"):
        register_task("toxicology", description="mine", preset="toxicology")(lambda n, seed: [])
    assert get_task("toxicology") is toxicology
    with pytest.raises(TypeError, match=r"policy \('mcq', 'random'\) is registered twice"):
        register_policy("mcq", "random", description="mine")(lambda case, rng: "A")
    register_task("test.extra", description="extra", preset="mcq")(lambda n, seed: [])
    assert "test.extra" in list_tasks()


def test_a_component_kind_cannot_be_shadowed_and_registers_once():
    class Clone(rewards_base.RewardComponent):
        kind = "length"

    with pytest.raises(TypeError, match="component kind 'length' is registered twice"):
        rewards_base.register(Clone)
    assert registered_kinds()["length"] is not Clone
    assert rewards_base.register(registered_kinds()["length"]) is registered_kinds()["length"]


def test_components_pickle_through_the_registry_builtin_and_custom():
    builtin = component_class("length")(name="len", mode="overlong", max_length=10, cache_length=2)
    clone = pickle.loads(pickle.dumps(builtin))
    assert type(clone) is type(builtin) and clone.params == builtin.params and clone.name == "len"
    custom = component_class("faulty_components:Raises")(name="r")  # tests/support is on sys.path
    assert type(pickle.loads(pickle.dumps(custom))) is type(custom)


def test_import_medreward_loads_no_builtin_modules():
    code = textwrap.dedent(
        """
        import sys, medreward
        loaded = [m for m in sys.modules if m.split(".")[1:2] in (["tasks"], ["baselines"])
                  or m.startswith("medreward.rewards.") and m != "medreward.rewards.base"]
        assert not loaded, loaded
        assert "length" in medreward.registered_kinds()
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
