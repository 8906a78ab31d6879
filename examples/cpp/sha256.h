// SHA-256 (FIPS 180-4): the example checks the engine and the plugin library against the
// sha256 the manifest recorded before loading either.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace classify
{

//! Lower-case hex digest, as Python's hashlib.sha256(data).hexdigest().
std::string sha256Hex(uint8_t const* data, size_t size);

inline std::string sha256Hex(std::vector<uint8_t> const& data)
{
    return sha256Hex(data.data(), data.size());
}

} // namespace classify
