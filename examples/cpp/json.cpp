// The manifest's JSON reader (see json.h).
#include "json.h"

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace classify
{

Json const* Json::get(std::string const& key) const
{
    if (kind != Kind::kObject)
    {
        return nullptr;
    }
    auto const it = fields.find(key);
    return it != fields.end() ? &it->second : nullptr;
}

Json const* Json::at(std::initializer_list<char const*> path) const
{
    Json const* node = this;
    for (char const* key : path)
    {
        node = node != nullptr ? node->get(key) : nullptr;
    }
    return node;
}

namespace
{

void appendUtf8(std::string& out, unsigned code)
{
    if (code < 0x80)
    {
        out += static_cast<char>(code);
    }
    else if (code < 0x800)
    {
        out += static_cast<char>(0xC0 | (code >> 6));
        out += static_cast<char>(0x80 | (code & 0x3F));
    }
    else if (code < 0x10000)
    {
        out += static_cast<char>(0xE0 | (code >> 12));
        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (code & 0x3F));
    }
    else
    {
        out += static_cast<char>(0xF0 | (code >> 18));
        out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (code & 0x3F));
    }
}

class Parser
{
public:
    explicit Parser(std::string const& text)
        : mText(text)
    {
    }

    Json parseDocument()
    {
        Json value = parseValue();
        skipSpace();
        if (mPos != mText.size())
        {
            error("trailing characters");
        }
        return value;
    }

private:
    [[noreturn]] void error(char const* what) const
    {
        throw std::runtime_error(std::string("manifest JSON: ") + what + " at offset " + std::to_string(mPos));
    }

    void skipSpace()
    {
        while (mPos < mText.size() && std::isspace(static_cast<unsigned char>(mText[mPos])))
        {
            ++mPos;
        }
    }

    char peek()
    {
        skipSpace();
        if (mPos >= mText.size())
        {
            error("unexpected end");
        }
        return mText[mPos];
    }

    void expect(char c)
    {
        if (peek() != c)
        {
            error("unexpected character");
        }
        ++mPos;
    }

    bool consumeWord(char const* word)
    {
        size_t const n = std::strlen(word);
        if (mText.compare(mPos, n, word) == 0)
        {
            mPos += n;
            return true;
        }
        return false;
    }

    Json parseValue()
    {
        char const c = peek();
        if (c == '{')
        {
            return parseObject();
        }
        if (c == '[')
        {
            return parseArray();
        }
        Json value;
        if (c == '"')
        {
            value.kind = Json::Kind::kString;
            value.text = parseString();
        }
        else if (consumeWord("true") || consumeWord("false"))
        {
            value.kind = Json::Kind::kBool;
            value.boolean = mText[mPos - 1] == 'e' && mText[mPos - 2] == 'u';
        }
        else if (!consumeWord("null"))
        {
            // strtod also reads Python's NaN/Infinity, which json.dumps writes for non-finite floats.
            char const* begin = mText.c_str() + mPos;
            char* end = nullptr;
            value.number = std::strtod(begin, &end);
            if (end == begin)
            {
                error("invalid value");
            }
            value.kind = Json::Kind::kNumber;
            mPos += static_cast<size_t>(end - begin);
        }
        return value;
    }

    Json parseObject()
    {
        Json value;
        value.kind = Json::Kind::kObject;
        expect('{');
        if (peek() == '}')
        {
            ++mPos;
            return value;
        }
        while (true)
        {
            if (peek() != '"')
            {
                error("expected a string key");
            }
            std::string key = parseString();
            expect(':');
            value.fields[key] = parseValue();
            if (peek() == ',')
            {
                ++mPos;
                continue;
            }
            expect('}');
            return value;
        }
    }

    Json parseArray()
    {
        Json value;
        value.kind = Json::Kind::kArray;
        expect('[');
        if (peek() == ']')
        {
            ++mPos;
            return value;
        }
        while (true)
        {
            value.items.push_back(parseValue());
            if (peek() == ',')
            {
                ++mPos;
                continue;
            }
            expect(']');
            return value;
        }
    }

    unsigned parseHex4()
    {
        if (mPos + 4 > mText.size())
        {
            error("bad \\u escape");
        }
        unsigned code = 0;
        for (int i = 0; i < 4; ++i)
        {
            char const h = mText[mPos++];
            if (!std::isxdigit(static_cast<unsigned char>(h)))
            {
                error("bad \\u escape");
            }
            code = code * 16 + static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (h | 0x20) - 'a' + 10);
        }
        return code;
    }

    //! Python's json.dumps escapes every non-ASCII character (ensure_ascii), astral ones as a
    //! surrogate pair: both halves make one code point.
    unsigned parseCodePoint()
    {
        unsigned const code = parseHex4();
        if (code >= 0xD800 && code < 0xDC00 && mText.compare(mPos, 2, "\\u") == 0)
        {
            size_t const save = mPos;
            mPos += 2;
            unsigned const low = parseHex4();
            if (low >= 0xDC00 && low < 0xE000)
            {
                return 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
            }
            mPos = save;
        }
        return code >= 0xD800 && code < 0xE000 ? 0xFFFD : code; // a lone surrogate is no character
    }

    std::string parseString()
    {
        expect('"');
        std::string out;
        while (mPos < mText.size() && mText[mPos] != '"')
        {
            char const c = mText[mPos++];
            if (c != '\\')
            {
                out += c;
                continue;
            }
            if (mPos >= mText.size())
            {
                error("bad escape");
            }
            char const e = mText[mPos++];
            switch (e)
            {
            case 'n': out += '\n'; break;
            case 't': out += '\t'; break;
            case 'r': out += '\r'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'u': appendUtf8(out, parseCodePoint()); break;
            case '"':
            case '\\':
            case '/': out += e; break;
            default: error("bad escape");
            }
        }
        if (mPos >= mText.size())
        {
            error("unterminated string");
        }
        ++mPos;
        return out;
    }

    std::string const& mText;
    size_t mPos{0};
};

} // namespace

Json parseJson(std::string const& text)
{
    return Parser(text).parseDocument();
}

std::vector<float> jsonFloats(Json const* node)
{
    std::vector<float> out;
    if (node != nullptr && node->kind == Json::Kind::kArray)
    {
        for (Json const& item : node->items)
        {
            out.push_back(static_cast<float>(item.number));
        }
    }
    return out;
}

std::string jsonText(Json const* node, std::string const& fallback)
{
    return node != nullptr && node->kind == Json::Kind::kString ? node->text : fallback;
}

} // namespace classify
