"""Conan 2 recipe of dm2s2, a header-only C++20 library, with the option of dm2s2::cuda, its CUDA
backend, a static library built by nvcc.

From a checkout:  conan create . --build=missing  [-o "dm2s2/*:with_cuda=True"]
A consumer then requires "dm2s2/0.1.0" and uses the CMakeDeps targets dm2s2::dm2s2, dm2s2::text,
dm2s2::xtensor and dm2s2::cuda, the names dm2s2's own CMake package exports. with_cuda needs the CUDA
toolkit on the building machine (nvcc found on PATH or through CUDACXX) and on the consumer's, where
dm2s2::cuda links its runtime (CMake's FindCUDAToolkit) and loads its cuBLAS when it first runs on the GPU.
"""

import os

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, rmdir, save
from conan.tools.layout import basic_layout

required_conan_version = ">=2.0"


class Dm2s2Conan(ConanFile):
    name = "dm2s2"
    version = "0.1.0"
    description = ("DM²S²: deep multimodal sequence sets with hierarchical modality attention "
                   "(BERT encoder, IntraMRA/InterMRA pooling, explanations, training), header-only C++20")
    license = "MIT"
    topics = ("multimodal", "bert", "attention", "explainability", "header-only")
    package_type = "header-library"  # a static library too with with_cuda (configure())
    settings = "os", "arch", "compiler", "build_type"
    options = {
        "with_xsimd": [True, False],    # xsimd element-wise CPU kernels
        "with_text": [True, False],     # dm2s2::text: WordPiece tokenizer, JSON Lines records (utf8proc)
        "with_xtensor": [True, False],  # dm2s2::xtensor: xtensor views and inputs
        "with_cuda": [True, False],     # dm2s2::cuda: the CUDA backend, a static library built by nvcc
    }
    default_options = {"with_xsimd": True, "with_text": True, "with_xtensor": False, "with_cuda": False}
    # The headers; with_cuda builds dm2s2::cuda with the project's CMake files.
    exports_sources = "include/*", "src/*", "cmake/*", "CMakeLists.txt", "LICENSE"
    no_copy_source = True

    # Where the packaged CMake module that links dm2s2::cuda to the CUDA toolkit lies.
    cuda_module = os.path.join("lib", "cmake", "dm2s2-cuda-toolkit.cmake")

    def configure(self):
        if self.options.with_cuda:
            self.package_type = "static-library"

    # The versions dm2s2's CMake package accepts (cmake/dm2s2Dependencies.cmake).
    def requirements(self):
        self.requires("eigen/[>=3.4 <6]")
        self.requires("nlohmann_json/[>=3.11 <3.13]")
        if self.options.with_xsimd:
            self.requires("xsimd/[>=8 <15]")
        if self.options.with_text:
            self.requires("utf8proc/[>=2.8 <3]")
        if self.options.with_xtensor:
            self.requires("xtensor/[>=0.24 <0.28]")

    def layout(self):
        if self.options.with_cuda:
            cmake_layout(self, src_folder=".")
        else:
            basic_layout(self, src_folder=".")

    def package_id(self):
        if not self.info.options.with_cuda:
            self.info.clear()  # headers only: one package for every configuration

    def validate(self):
        check_min_cppstd(self, 20)
        if self.options.with_cuda and self.settings.os not in ("Linux", "Windows"):
            raise ConanInvalidConfiguration("dm2s2: with_cuda needs the CUDA toolkit, which exists for Linux and Windows")

    def generate(self):
        if not self.options.with_cuda:
            return
        toolchain = CMakeToolchain(self)
        toolchain.variables.update({
            "DM2S2_CUDA": True,
            "DM2S2_USE_XSIMD": bool(self.options.with_xsimd),
            "DM2S2_TEXT": bool(self.options.with_text),
            "DM2S2_XTENSOR": bool(self.options.with_xtensor),
            "DM2S2_BUILD_TESTS": False,
            "DM2S2_BUILD_EXAMPLES": False,
            "DM2S2_BUILD_BENCHMARKS": False,
            "DM2S2_PACKAGE_TESTS": False,
            "DM2S2_INSTALL": True,
            "DM2S2_INSTALL_DOCS": False,
        })
        toolchain.generate()
        CMakeDeps(self).generate()

    def build(self):
        if self.options.with_cuda:
            cmake = CMake(self)
            cmake.configure()
            cmake.build(target="dm2s2_cuda")

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        if not self.options.with_cuda:
            copy(self, "*.hpp", os.path.join(self.source_folder, "include"), os.path.join(self.package_folder, "include"))
            return
        CMake(self).install()
        rmdir(self, os.path.join(self.package_folder, "share"))  # dm2s2's own CMake files: CMakeDeps writes them
        save(self, os.path.join(self.package_folder, self.cuda_module),
             "# dm2s2::cuda links the CUDA runtime of the toolkit on this machine; it loads that\n"
             "# toolkit's cuBLAS at its first device context.\n"
             "find_package(CUDAToolkit REQUIRED)\n"
             "target_link_libraries(dm2s2::cuda INTERFACE CUDA::cudart ${CMAKE_DL_LIBS})\n")

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "dm2s2")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []

        core = self.cpp_info.components["dm2s2"]
        core.set_property("cmake_target_name", "dm2s2::dm2s2")
        core.bindirs = []
        core.libdirs = []
        # ConanCenter's eigen declares its headers as the component eigen3; the others have none.
        core.requires = ["eigen::eigen3", "nlohmann_json::nlohmann_json"]
        if self.options.with_xsimd:
            core.requires.append("xsimd::xsimd")
        else:
            core.defines = ["DM2S2_NO_XSIMD"]
        if self.settings.os in ("Linux", "FreeBSD"):
            core.system_libs = ["pthread"]

        if self.options.with_text:
            text = self.cpp_info.components["text"]
            text.set_property("cmake_target_name", "dm2s2::text")
            text.bindirs = []
            text.libdirs = []
            text.requires = ["dm2s2", "utf8proc::utf8proc"]

        if self.options.with_xtensor:
            xtensor = self.cpp_info.components["xtensor"]
            xtensor.set_property("cmake_target_name", "dm2s2::xtensor")
            xtensor.bindirs = []
            xtensor.libdirs = []
            xtensor.requires = ["dm2s2", "xtensor::xtensor"]

        if self.options.with_cuda:
            cuda = self.cpp_info.components["cuda"]
            cuda.set_property("cmake_target_name", "dm2s2::cuda")
            cuda.bindirs = []
            cuda.libs = ["dm2s2_cuda"]
            cuda.defines = ["DM2S2_HAS_CUDA"]
            cuda.requires = ["dm2s2"]
            self.cpp_info.set_property("cmake_build_modules", [self.cuda_module])
