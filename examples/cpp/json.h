// A small JSON reader: enough for the engine manifest `toolchain build` writes (objects,
// arrays, strings, numbers, booleans, null), so the example needs no JSON library.
#pragma once

#include <initializer_list>
#include <map>
#include <string>
#include <vector>

namespace classify
{

struct Json
{
    enum class Kind
    {
        kNull,
        kBool,
        kNumber,
        kString,
        kArray,
        kObject
    };
    Kind kind{Kind::kNull};
    bool boolean{false};
    double number{0.0};
    std::string text; // UTF-8
    std::vector<Json> items;
    std::map<std::string, Json> fields;

    //! The member `key` of an object; nullptr when this is not an object or has no such key.
    Json const* get(std::string const& key) const;
    //! Follow a path of object keys; nullptr when any step is missing.
    Json const* at(std::initializer_list<char const*> path) const;
};

//! Parses one JSON document; throws std::runtime_error("manifest JSON: <what> at offset N").
Json parseJson(std::string const& text);

//! The numbers of an array (empty when `node` is missing or not an array).
std::vector<float> jsonFloats(Json const* node);

//! The string `node` holds, else `fallback`.
std::string jsonText(Json const* node, std::string const& fallback = "");

} // namespace classify
