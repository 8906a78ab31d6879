// Images for the example: binary PPM/PGM in, toolchain's evaluation transform out.
// The transform matches toolchain.data.eval_transform and examples/python/classify_no_torch.py:
// resize the shorter side to round(size*256/224) with an antialiased bilinear filter,
// center-crop size x size, scale to [0, 1], grey<->RGB to the engine's channels,
// normalize with mean/std.
#pragma once

#include <string>
#include <vector>

namespace classify
{

struct Image
{
    int width{0};
    int height{0};
    int channels{0};
    std::vector<float> pixels; // HWC, in [0, 1]
};

//! Reads an 8-bit binary PPM (P6, RGB) or PGM (P5, grey); throws std::runtime_error otherwise.
Image readNetpbm(std::string const& path);

//! Antialiased bilinear (triangle filter, widened when shrinking) resize, like Pillow's BILINEAR.
Image resize(Image const& src, int width, int height);

//! "0.485,0.456,0.406" -> {0.485, 0.456, 0.406} (the --mean/--std lists); throws on a bad number.
std::vector<float> parseFloats(std::string const& text);

//! The evaluation transform to a CHW float tensor; mean/stdev hold `channels` values.
std::vector<float> preprocess(
    Image const& image, int size, int channels, std::vector<float> const& mean, std::vector<float> const& stdev);

} // namespace classify
