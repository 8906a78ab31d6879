// PPM/PGM reading, resize and preprocessing (see image.h).
#include "image.h"

#include "file.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace classify
{
namespace
{

using Taps = std::vector<std::vector<std::pair<int, float>>>;

//! Weights of an antialiased linear (triangle) filter resampling `in` samples to `out` samples.
Taps linearWeights(int in, int out)
{
    double const scale = static_cast<double>(in) / out;
    double const support = std::max(1.0, scale); // widen the filter when shrinking (antialiasing)
    Taps weights(static_cast<size_t>(out));
    for (int o = 0; o < out; ++o)
    {
        double const center = (o + 0.5) * scale;
        int const lo = std::max(0, static_cast<int>(std::floor(center - support)));
        int const hi = std::min(in - 1, static_cast<int>(std::ceil(center + support)));
        double total = 0.0;
        for (int i = lo; i <= hi; ++i)
        {
            double const w = std::max(0.0, 1.0 - std::abs((i + 0.5 - center) / support));
            if (w > 0.0)
            {
                weights[o].emplace_back(i, static_cast<float>(w));
                total += w;
            }
        }
        for (auto& entry : weights[o])
        {
            entry.second = static_cast<float>(entry.second / total);
        }
    }
    return weights;
}

} // namespace

Image readNetpbm(std::string const& path)
{
    std::vector<uint8_t> const bytes = readFile(path);
    size_t pos = 0;
    // Header tokens are separated by whitespace; '#' starts a comment up to the end of the line.
    auto token = [&]() {
        std::string out;
        while (pos < bytes.size())
        {
            char const c = static_cast<char>(bytes[pos]);
            if (c == '#')
            {
                while (pos < bytes.size() && bytes[pos] != '\n')
                {
                    ++pos;
                }
            }
            else if (std::isspace(static_cast<unsigned char>(c)))
            {
                if (!out.empty())
                {
                    break;
                }
                ++pos;
            }
            else
            {
                out += c;
                ++pos;
            }
        }
        return out;
    };
    std::string const magic = token();
    if (magic != "P6" && magic != "P5")
    {
        throw std::runtime_error(path + " is not a binary PPM (P6) or PGM (P5) image; convert it, e.g. with Pillow: "
                                        "Image.open(src).convert('RGB').save('image.ppm')");
    }
    Image image;
    image.channels = magic == "P6" ? 3 : 1;
    image.width = std::atoi(token().c_str());
    image.height = std::atoi(token().c_str());
    int const maxValue = std::atoi(token().c_str());
    ++pos; // the single whitespace after the header
    if (image.width <= 0 || image.height <= 0 || maxValue <= 0 || maxValue > 255)
    {
        throw std::runtime_error(path + ": unsupported size or bit depth (8-bit images only)");
    }
    size_t const count = static_cast<size_t>(image.width) * image.height * image.channels;
    if (bytes.size() < pos + count)
    {
        throw std::runtime_error(path + " is truncated");
    }
    image.pixels.resize(count);
    for (size_t i = 0; i < count; ++i)
    {
        image.pixels[i] = static_cast<float>(bytes[pos + i]) / static_cast<float>(maxValue);
    }
    return image;
}

Image resize(Image const& src, int width, int height)
{
    if (width <= 0 || height <= 0 || src.width <= 0 || src.height <= 0)
    {
        throw std::runtime_error("resize: empty image or target size");
    }
    Taps const wx = linearWeights(src.width, width);
    Taps const wy = linearWeights(src.height, height);
    size_t const c = static_cast<size_t>(src.channels);
    size_t const w = static_cast<size_t>(width);
    // Separable: a horizontal pass into `rows`, then a vertical pass into the result.
    std::vector<float> rows(static_cast<size_t>(src.height) * w * c, 0.F);
    for (size_t y = 0; y < static_cast<size_t>(src.height); ++y)
    {
        for (size_t x = 0; x < w; ++x)
        {
            for (auto const& [i, weight] : wx[x])
            {
                for (size_t k = 0; k < c; ++k)
                {
                    rows[(y * w + x) * c + k] += weight * src.pixels[(y * src.width + i) * c + k];
                }
            }
        }
    }
    Image dst{width, height, src.channels, std::vector<float>(w * height * c, 0.F)};
    for (size_t y = 0; y < static_cast<size_t>(height); ++y)
    {
        for (auto const& [j, weight] : wy[y])
        {
            for (size_t x = 0; x < w * c; ++x)
            {
                dst.pixels[y * w * c + x] += weight * rows[static_cast<size_t>(j) * w * c + x];
            }
        }
    }
    return dst;
}

std::vector<float> preprocess(
    Image const& image, int size, int channels, std::vector<float> const& mean, std::vector<float> const& stdev)
{
    if (size <= 0 || channels <= 0 || mean.size() < static_cast<size_t>(channels)
        || stdev.size() < static_cast<size_t>(channels))
    {
        throw std::runtime_error("preprocess: need a positive size and " + std::to_string(channels)
            + " mean/std values");
    }
    // Python's round() (ties to even, as std::nearbyint in the default rounding mode), like toolchain.data.
    int const shorter = static_cast<int>(std::nearbyint(size * 256.0 / 224.0));
    // Like torchvision's Resize(int): the longer side is truncated, not rounded.
    int const w = image.width <= image.height ? shorter : static_cast<int>(double(image.width) * shorter / image.height);
    int const h = image.width <= image.height ? static_cast<int>(double(image.height) * shorter / image.width) : shorter;
    Image const resized = resize(image, w, h);
    int const top = static_cast<int>(std::nearbyint((h - size) / 2.0)); // torchvision's center crop
    int const left = static_cast<int>(std::nearbyint((w - size) / 2.0));
    std::vector<float> chw(static_cast<size_t>(channels) * size * size);
    for (int y = 0; y < size; ++y)
    {
        for (int x = 0; x < size; ++x)
        {
            float const* p = &resized.pixels[(static_cast<size_t>(y + top) * w + (x + left)) * resized.channels];
            for (int k = 0; k < channels; ++k)
            {
                float v = 0.F;
                if (resized.channels == channels)
                {
                    v = p[k];
                }
                else if (resized.channels == 1)
                {
                    v = p[0]; // grey -> RGB: repeat
                }
                else
                {
                    v = 0.299F * p[0] + 0.587F * p[1] + 0.114F * p[2]; // RGB -> grey: luma
                }
                chw[(static_cast<size_t>(k) * size + y) * size + x] = (v - mean[k]) / stdev[k];
            }
        }
    }
    return chw;
}

std::vector<float> parseFloats(std::string const& text)
{
    std::vector<float> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ','))
    {
        out.push_back(std::stof(item));
    }
    return out;
}

} // namespace classify
