"""Conan 2 recipe of dm2s2, a header-only C++20 library.

From a checkout:  conan create . --build=missing
A consumer then requires "dm2s2/0.1.0" and uses the CMakeDeps targets dm2s2::dm2s2, dm2s2::text and
dm2s2::xtensor, the names dm2s2's own CMake package exports.
"""

import os

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy
from conan.tools.layout import basic_layout

required_conan_version = ">=2.0"


class Dm2s2Conan(ConanFile):
    name = "dm2s2"
    version = "0.1.0"
    description = ("DM²S²: deep multimodal sequence sets with hierarchical modality attention "
                   "(BERT encoder, IntraMRA/InterMRA pooling, explanations, training), header-only C++20")
    license = "MIT"
    topics = ("multimodal", "bert", "attention", "explainability", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    options = {
        "with_xsimd": [True, False],    # xsimd element-wise CPU kernels
        "with_text": [True, False],     # dm2s2::text: WordPiece tokenizer, JSON Lines records (utf8proc)
        "with_xtensor": [True, False],  # dm2s2::xtensor: xtensor views and inputs
    }
    default_options = {"with_xsimd": True, "with_text": True, "with_xtensor": False}
    exports_sources = "include/*", "LICENSE"
    no_copy_source = True

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
        basic_layout(self, src_folder=".")

    def package_id(self):
        self.info.clear()  # headers only: one package for every configuration

    def validate(self):
        check_min_cppstd(self, 20)

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", os.path.join(self.source_folder, "include"), os.path.join(self.package_folder, "include"))

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
