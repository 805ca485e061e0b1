"""Loads the repository's Conan 2 recipe (conanfile.py) and its test package with a minimal stand-in of
Conan's base classes and tools, since Conan itself cannot run here, and checks what Conan would read:
attributes, the requirements of every option combination (version ranges equal to the ones the CMake
package accepts), the packaged files, and the CMakeDeps file and target names, which must be the
targets dm2s2's own CMake package exports.

    python3 check_conan_recipe.py REPOSITORY_ROOT
Prints each check; exits 1 with the failed check's message.
"""

import fnmatch
import importlib.util
import itertools
import os
import re
import shutil
import sys
import tempfile
import types

root = os.path.abspath(sys.argv[1])
failures = []


def check(condition, message):
    print(("ok:     " if condition else "FAILED: ") + message)
    if not condition:
        failures.append(message)


# ---- the stand-in of the parts of Conan 2 the recipes use ----------------------------------------

class Options:
    def __init__(self, values):
        self.__dict__.update(values)


class Settings:
    def __init__(self, **values):
        self.__dict__.update(values)


class Component:
    def __init__(self):
        self.properties = {}
        self.requires = []
        self.defines = []
        self.system_libs = []
        self.bindirs = ["bin"]
        self.libdirs = ["lib"]

    def set_property(self, name, value):
        self.properties[name] = value


class CppInfo(Component):
    def __init__(self):
        super().__init__()

        class Components(dict):
            def __missing__(self, key):
                self[key] = Component()
                return self[key]

        self.components = Components()


class Info:
    def __init__(self):
        self.cleared = False

    def clear(self):
        self.cleared = True


class ConanFile:
    def __init__(self, options=None, os_name="Linux"):
        declared = dict(getattr(self, "default_options", {}))
        declared.update(options or {})
        self.options = Options(declared)
        self.settings = Settings(os=os_name, compiler="gcc", build_type="Release", arch="x86_64")
        self.requirements_seen = []
        self.cpp_info = CppInfo()
        self.info = Info()
        self.source_folder = root
        self.package_folder = None
        self.tested_reference_str = "dm2s2/0.1.0"

    def requires(self, reference, **kwargs):
        self.requirements_seen.append(reference)


cppstd_checked = []


def check_min_cppstd(conanfile, version):
    cppstd_checked.append(str(version))


def copy(conanfile, pattern, src, dst):
    copied = []
    for folder, _, files in os.walk(src):
        for name in files:
            relative = os.path.relpath(os.path.join(folder, name), src)
            if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(relative, pattern):
                os.makedirs(os.path.join(dst, os.path.dirname(relative)), exist_ok=True)
                shutil.copy2(os.path.join(folder, name), os.path.join(dst, relative))
                copied.append(relative)
    return copied


def install_stand_in():
    modules = {
        "conan": {"ConanFile": ConanFile},
        "conan.tools": {},
        "conan.tools.build": {"check_min_cppstd": check_min_cppstd, "can_run": lambda conanfile: True},
        "conan.tools.files": {"copy": copy},
        "conan.tools.layout": {"basic_layout": lambda conanfile, src_folder=".": None},
        "conan.tools.cmake": {"CMake": object, "cmake_layout": lambda conanfile: None},
    }
    for name, members in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(members)
        sys.modules[name] = module


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = [c for c in module.__dict__.values() if isinstance(c, type) and issubclass(c, ConanFile) and c is not ConanFile]
    if len(classes) != 1:
        raise SystemExit(f"{path}: expected one ConanFile subclass, found {len(classes)}")
    return classes[0]


# ---- what the CMake package says -----------------------------------------------------------------

def read(path):
    with open(os.path.join(root, path), encoding="utf-8") as f:
        return f.read()


cmake_lists = read("CMakeLists.txt")
cmake_version = re.search(r"project\(dm2s2 VERSION ([0-9.]+)", cmake_lists).group(1)
ranges = dict(re.findall(r"set\(DM2S2_(\w+)_VERSIONS ([0-9.]+ [0-9.]+)\)", read("cmake/dm2s2Dependencies.cmake")))
expected_range = {name: ">={} <{}".format(*ranges[key].split()) for name, key in
                  [("eigen", "EIGEN"), ("nlohmann_json", "NLOHMANN_JSON"), ("xsimd", "XSIMD"), ("xtensor", "XTENSOR")]}
exported_targets = {"dm2s2::dm2s2"} | {"dm2s2::" + n for n in re.findall(r"EXPORT_NAME (\w+)", cmake_lists)}

# ---- the recipe ----------------------------------------------------------------------------------

install_stand_in()
recipe = load(os.path.join(root, "conanfile.py"), "dm2s2_conanfile")
check(recipe.name == "dm2s2", "name is dm2s2")
check(recipe.version == cmake_version, f"version {recipe.version} is the CMake project's {cmake_version}")
check(recipe.license == "MIT", "licence MIT, as LICENSE")
check(recipe.package_type == "header-library", "package_type is header-library")
check(getattr(recipe, "no_copy_source", False), "sources are not copied to a build folder")
check("include/*" in recipe.exports_sources and "LICENSE" in recipe.exports_sources, "exports include/ and LICENSE")
check(set(recipe.options) == {"with_xsimd", "with_text", "with_xtensor"}, "options with_xsimd, with_text, with_xtensor")

for xsimd, text, xtensor in itertools.product([True, False], repeat=3):
    label = f"with_xsimd={xsimd} with_text={text} with_xtensor={xtensor}"
    conanfile = recipe({"with_xsimd": xsimd, "with_text": text, "with_xtensor": xtensor})
    conanfile.requirements()
    required = {r.split("/")[0]: r.split("/", 1)[1] for r in conanfile.requirements_seen}
    wanted = {"eigen", "nlohmann_json"} | ({"xsimd"} if xsimd else set()) | ({"utf8proc"} if text else set()) | \
             ({"xtensor"} if xtensor else set())
    check(set(required) == wanted, f"{label}: requires {sorted(required)}")
    for name, version_range in required.items():
        if name in expected_range:
            check(version_range == f"[{expected_range[name]}]",
                  f"{label}: {name} {version_range} is the CMake package's range [{expected_range[name]}]")

    conanfile.package_id()
    check(conanfile.info.cleared, f"{label}: one package id for every configuration")
    conanfile.validate()
    check(cppstd_checked and cppstd_checked[-1] == "20", f"{label}: C++20 required")

    conanfile.package_info()
    info = conanfile.cpp_info
    check(info.properties.get("cmake_file_name") == "dm2s2", f"{label}: CMakeDeps writes dm2s2-config.cmake")
    check(info.bindirs == [] and info.libdirs == [], f"{label}: no bin or lib directories")
    components = dict(info.components)
    wanted_components = {"dm2s2"} | ({"text"} if text else set()) | ({"xtensor"} if xtensor else set())
    check(set(components) == wanted_components, f"{label}: components {sorted(components)}")
    for name, component in components.items():
        target = component.properties.get("cmake_target_name")
        check(target in exported_targets, f"{label}: component {name} is CMake target {target}, which dm2s2 exports")
        check(component.bindirs == [] and component.libdirs == [], f"{label}: component {name} has no bin or lib directories")
        for requirement in component.requires:
            package = requirement.split("::")[0]
            check(requirement in components and requirement != name or package in required,
                  f"{label}: component {name} requires {requirement}, which the recipe provides or requires")
    check(("DM2S2_NO_XSIMD" in components["dm2s2"].defines) == (not xsimd), f"{label}: DM2S2_NO_XSIMD exactly without xsimd")

with tempfile.TemporaryDirectory() as package_folder:
    conanfile = recipe()
    conanfile.package_folder = package_folder
    conanfile.package()
    check(os.path.isfile(os.path.join(package_folder, "include", "dm2s2", "dm2s2.hpp")), "package() copies the headers")
    check(os.path.isfile(os.path.join(package_folder, "include", "dm2s2", "interop", "xtensor.hpp")), "... every layer's")
    check(os.path.isfile(os.path.join(package_folder, "licenses", "LICENSE")), "package() copies the licence")
    stray = [f for f in os.listdir(package_folder) if f not in ("include", "licenses")]
    check(not stray, f"nothing else is packaged ({stray})")

# ---- the test package ----------------------------------------------------------------------------

test_recipe = load(os.path.join(root, "test_package", "conanfile.py"), "dm2s2_test_package")
test = test_recipe()
test.requirements()
check(test.requirements_seen == ["dm2s2/0.1.0"], "test_package requires the tested reference")
check(set(getattr(test_recipe, "generators", ())) == {"CMakeDeps", "CMakeToolchain"}, "test_package uses CMakeDeps and CMakeToolchain")
test_cmake = read("test_package/CMakeLists.txt")
check("find_package(dm2s2 CONFIG REQUIRED)" in test_cmake and "dm2s2::dm2s2" in test_cmake,
      "test_package's CMakeLists finds dm2s2 and links dm2s2::dm2s2")

if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("conan recipe: every check passed")
