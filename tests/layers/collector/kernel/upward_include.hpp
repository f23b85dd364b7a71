// Never compiled: the input of the ctest layers.upward_include_fails, which runs collector/check_layers.cmake
// on this tree and expects it to refuse this include (kernel/ may not include decode/, a layer above it).
#pragma once

#include "collector/decode/payload_schema.hpp"
