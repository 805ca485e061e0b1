"""Loads the repository's Conan 2 recipe (conanfile.py) and its test package with a minimal stand-in of
Conan's base classes and tools, since Conan itself cannot run here, and checks what Conan would read:
attributes, the requirements of every option combination (version ranges equal to the ones the CMake
package accepts), the packaged files, and the CMakeDeps file and target names, which must be the
targets dm2s2's own CMake package exports.

Given nvcc, it also runs the with_cuda package's generate, build and package steps for real (CMake,
sm_90) from a copy of the recipe's exported sources, checks the package's files and links a program
against the library as CMakeDeps would declare it, with the recipe's CUDA toolkit module.

    python3 check_conan_recipe.py REPOSITORY_ROOT [NVCC]
Prints each check; exits 1 with the failed check's message.
"""

import fnmatch
import importlib.util
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types

root = os.path.abspath(sys.argv[1])
nvcc = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
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
        self.libs = []
        self.includedirs = ["include"]

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
    def __init__(self, options):
        self.cleared = False
        self.options = options

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
        self.info = Info(self.options)
        self.source_folder = root
        self.package_folder = None
        self.build_folder = None
        self.generators_folder = None
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


def rmdir(conanfile, path):
    shutil.rmtree(path, ignore_errors=True)


def save(conanfile, path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


class ConanInvalidConfiguration(Exception):
    pass


class CMakeToolchain:
    """Writes conan_toolchain.cmake: the variables as cache entries, and lib/ for libraries as Conan's."""
    last = None

    def __init__(self, conanfile):
        self.conanfile = conanfile
        self.variables = {}
        CMakeToolchain.last = self

    def generate(self):
        def value(v):
            return ("ON" if v else "OFF") if isinstance(v, bool) else str(v)
        lines = [f'set({k} "{value(v)}" CACHE STRING "" FORCE)' for k, v in self.variables.items()]
        lines.append('set(CMAKE_INSTALL_LIBDIR "lib" CACHE STRING "" FORCE)')
        save(self.conanfile, os.path.join(self.conanfile.generators_folder, "conan_toolchain.cmake"), "\n".join(lines) + "\n")


class CMakeDeps:
    """The dependencies come from this machine here, as the CMake package finds them."""
    def __init__(self, conanfile):
        pass

    def generate(self):
        pass


def run_command(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-4000:])
    return result.returncode == 0


class CMake:
    """Runs CMake with the toolchain the stand-in CMakeToolchain wrote (Ninja, Release)."""
    def __init__(self, conanfile):
        self.conanfile = conanfile

    def configure(self):
        c = self.conanfile
        toolchain = os.path.join(c.generators_folder, "conan_toolchain.cmake")
        c.cmake_ok = run_command(["cmake", "-S", c.source_folder, "-B", c.build_folder, "-G", "Ninja",
                                  "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_TOOLCHAIN_FILE={toolchain}",
                                  "-DCMAKE_CUDA_ARCHITECTURES=90"], env=dict(os.environ, CUDACXX=nvcc or ""))

    def build(self, target=None):
        c = self.conanfile
        c.cmake_ok = c.cmake_ok and run_command(["cmake", "--build", c.build_folder] + (["--target", target] if target else []))

    def install(self):
        c = self.conanfile
        c.cmake_ok = c.cmake_ok and run_command(["cmake", "--install", c.build_folder, "--prefix", c.package_folder])


def install_stand_in():
    modules = {
        "conan": {"ConanFile": ConanFile},
        "conan.errors": {"ConanInvalidConfiguration": ConanInvalidConfiguration},
        "conan.tools": {},
        "conan.tools.build": {"check_min_cppstd": check_min_cppstd, "can_run": lambda conanfile: True},
        "conan.tools.files": {"copy": copy, "rmdir": rmdir, "save": save},
        "conan.tools.layout": {"basic_layout": lambda conanfile, src_folder=".": None},
        "conan.tools.cmake": {"CMake": CMake, "CMakeDeps": CMakeDeps, "CMakeToolchain": CMakeToolchain,
                              "cmake_layout": lambda conanfile, src_folder=".": None},
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
cmake_sources = cmake_lists + "".join(read(os.path.join("cmake", f)) for f in sorted(os.listdir(os.path.join(root, "cmake")))
                                      if f.endswith(".cmake"))
exported_targets = {"dm2s2::dm2s2"} | {"dm2s2::" + n for n in re.findall(r"EXPORT_NAME (\w+)", cmake_sources)}

# ---- the recipe ----------------------------------------------------------------------------------

install_stand_in()
recipe = load(os.path.join(root, "conanfile.py"), "dm2s2_conanfile")
check(recipe.name == "dm2s2", "name is dm2s2")
check(recipe.version == cmake_version, f"version {recipe.version} is the CMake project's {cmake_version}")
check(recipe.license == "MIT", "licence MIT, as LICENSE")
check(recipe.package_type == "header-library", "package_type is header-library")
check(getattr(recipe, "no_copy_source", False), "sources are not copied to a build folder")
check("include/*" in recipe.exports_sources and "LICENSE" in recipe.exports_sources, "exports include/ and LICENSE")
check(set(recipe.options) == {"with_xsimd", "with_text", "with_xtensor", "with_cuda"},
      "options with_xsimd, with_text, with_xtensor, with_cuda")
check(recipe.default_options.get("with_cuda") is False, "with_cuda is off by default: header-only")

for xsimd, text, xtensor in itertools.product([True, False], repeat=3):
    label = f"with_xsimd={xsimd} with_text={text} with_xtensor={xtensor}"
    conanfile = recipe({"with_xsimd": xsimd, "with_text": text, "with_xtensor": xtensor, "with_cuda": False})
    conanfile.configure()
    check(conanfile.package_type == "header-library", f"{label}: a header-library")
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

# ---- with_cuda: a static library beside the headers, built for real where nvcc is given ----------

conanfile = recipe({"with_cuda": True})
conanfile.configure()
check(conanfile.package_type == "static-library", "with_cuda: a static-library")
conanfile.package_id()
check(not conanfile.info.cleared, "with_cuda: package ids depend on the settings")
conanfile.validate()
try:
    recipe({"with_cuda": True}, os_name="Macos").validate()
    check(False, "with_cuda is refused on macOS (no CUDA toolkit there)")
except ConanInvalidConfiguration as e:
    check("CUDA" in str(e), f"with_cuda is refused on macOS: {e}")
conanfile.package_info()
components = dict(conanfile.cpp_info.components)
cuda = components.get("cuda")
check(cuda is not None and cuda.properties.get("cmake_target_name") == "dm2s2::cuda" and "dm2s2::cuda" in exported_targets,
      "with_cuda: component cuda is CMake target dm2s2::cuda, which dm2s2 exports")
check(cuda is not None and cuda.libs == ["dm2s2_cuda"] and cuda.libdirs == ["lib"] and cuda.requires == ["dm2s2"]
      and "DM2S2_HAS_CUDA" in cuda.defines, "with_cuda: cuda links lib/libdm2s2_cuda.a, requires dm2s2, defines DM2S2_HAS_CUDA")
modules = conanfile.cpp_info.properties.get("cmake_build_modules", [])
check(modules == [recipe.cuda_module], f"with_cuda: CMakeDeps includes the toolkit module {modules}")

if nvcc:
    with tempfile.TemporaryDirectory() as scratch:
        # Conan builds from the exported sources: copy what exports_sources names, nothing else.
        source = os.path.join(scratch, "source")
        for pattern in conanfile.exports_sources:
            top = pattern.split("/")[0]
            if pattern.endswith("/*"):
                shutil.copytree(os.path.join(root, top), os.path.join(source, top))
            else:
                os.makedirs(source, exist_ok=True)
                shutil.copy2(os.path.join(root, pattern), os.path.join(source, pattern))
        conanfile.source_folder = source
        conanfile.build_folder = os.path.join(scratch, "build")
        conanfile.generators_folder = os.path.join(scratch, "build", "generators")
        conanfile.package_folder = os.path.join(scratch, "package")
        conanfile.generate()
        variables = CMakeToolchain.last.variables
        check(variables.get("DM2S2_CUDA") is True and variables.get("DM2S2_BUILD_TESTS") is False,
              "with_cuda: the toolchain turns DM2S2_CUDA on and the tests off")
        conanfile.build()
        conanfile.package()
        check(conanfile.cmake_ok, "with_cuda: CMake configured, built and installed dm2s2::cuda from the exported sources")
        packaged = sorted(os.path.relpath(os.path.join(d, f), conanfile.package_folder)
                          for d, _, files in os.walk(conanfile.package_folder) for f in files)
        non_headers = [f for f in packaged if not f.startswith("include" + os.sep)]
        check(non_headers == sorted(["lib/libdm2s2_cuda.a", recipe.cuda_module, "licenses/LICENSE"]),
              f"with_cuda: the package holds the headers, the library, the module and the licence ({non_headers})")
        check(os.path.join("include", "dm2s2", "backend", "cuda", "cuda_backend.hpp") in packaged, "... and the backend's header")
        # A consumer of dm2s2::cuda declared as CMakeDeps declares a component (an interface target of the
        # package's include directory, library and defines), with the recipe's module included after it.
        consumer = os.path.join(scratch, "consumer")
        package = conanfile.package_folder
        save(None, os.path.join(consumer, "CMakeLists.txt"), f"""cmake_minimum_required(VERSION 3.20)
project(conan_cuda_consumer LANGUAGES CXX)
find_package(Eigen3 REQUIRED NO_MODULE)
find_package(nlohmann_json REQUIRED)
find_package(Threads REQUIRED)
add_library(dm2s2::cuda INTERFACE IMPORTED)
set_target_properties(dm2s2::cuda PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "{package}/include"
  INTERFACE_COMPILE_DEFINITIONS "{';'.join(cuda.defines)}"
  INTERFACE_COMPILE_FEATURES cxx_std_20
  INTERFACE_LINK_LIBRARIES "{package}/lib/libdm2s2_cuda.a;Eigen3::Eigen;nlohmann_json::nlohmann_json;Threads::Threads")
include("{package}/{recipe.cuda_module}")
add_executable(cuda_consumer "{root}/tests/install_consumer/consumer/cuda.cpp")
target_link_libraries(cuda_consumer PRIVATE dm2s2::cuda)
""")
        built = run_command(["cmake", "-S", consumer, "-B", os.path.join(consumer, "build"), "-G", "Ninja",
                             f"-DCMAKE_CUDA_COMPILER={nvcc}"]) and \
            run_command(["cmake", "--build", os.path.join(consumer, "build")])
        check(built, "with_cuda: a program links dm2s2::cuda through the recipe's toolkit module")
        ran = built and run_command([os.path.join(consumer, "build", "cuda_consumer")])
        check(ran, "with_cuda: the program runs (the device's name, or why there is none)")
else:
    print("skipped: the with_cuda build (no nvcc given)")

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
