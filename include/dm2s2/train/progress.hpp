#pragma once
/// \file
/// `progress_meter`: the trainer's progress display. On a terminal it redraws one bar per epoch (step,
/// loss, samples/s, ETA); on anything else it prints plain lines, about ten per epoch, so that logs
/// stay readable.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <iostream>
#include <ostream>
#include <string>

#include <unistd.h>

namespace dm2s2 {

/// How training progress is shown.
enum class progress_style {
    automatic,  ///< a bar when the stream is a terminal, lines otherwise
    bar,        ///< a bar redrawn in place
    lines,      ///< plain lines
    none        ///< nothing
};

/// True when `out` is std::cout or std::cerr/std::clog and that descriptor is a terminal.
inline bool is_terminal(const std::ostream& out)
{
    if (&out == &std::cout) return ::isatty(STDOUT_FILENO) != 0;
    if (&out == &std::cerr || &out == &std::clog) return ::isatty(STDERR_FILENO) != 0;
    return false;
}

/// Shows the progress of the steps of one epoch at a time.
class progress_meter {
public:
    progress_meter(std::ostream& out, progress_style style)
        : out_(out),
          style_(style == progress_style::automatic ? (is_terminal(out) ? progress_style::bar : progress_style::lines) : style)
    {
    }

    progress_style style() const noexcept { return style_; }

    /// Starts epoch `epoch` (1-based) of `epochs`, which has `steps` batches, the first `done` of them
    /// already done (when resuming).
    void start_epoch(std::size_t epoch, std::size_t epochs, std::size_t steps, std::size_t done = 0)
    {
        epoch_ = epoch;
        epochs_ = epochs;
        steps_ = steps;
        first_step_ = done;
        samples_ = 0;
        start_ = last_draw_ = clock::now();
    }

    /// Reports that batch `step` (1-based within the epoch) of `samples` records is done, with the mean
    /// training loss of the epoch so far.
    void update(std::size_t step, std::size_t samples, double mean_loss)
    {
        samples_ += samples;
        if (style_ == progress_style::none) return;
        const auto now = clock::now();
        const bool last = step == steps_;
        if (style_ == progress_style::bar) {
            if (!last && now - last_draw_ < std::chrono::milliseconds(100)) return;
            out_ << '\r' << bar(step) << ' ' << status(step, mean_loss, now) << "\033[K" << std::flush;
        } else {
            const std::size_t every = std::max<std::size_t>(1, steps_ / 10);
            if (!last && step % every != 0) return;
            out_ << "epoch " << epoch_ << '/' << epochs_ << ' ' << status(step, mean_loss, now) << '\n' << std::flush;
        }
        last_draw_ = now;
    }

    /// Ends the epoch's display with a summary line (validation metrics, say).
    void finish_epoch(const std::string& summary)
    {
        if (style_ == progress_style::none) return;
        if (style_ == progress_style::bar) out_ << '\n';
        out_ << "epoch " << epoch_ << '/' << epochs_ << ": " << summary << '\n' << std::flush;
    }

private:
    using clock = std::chrono::steady_clock;

    std::string bar(std::size_t step) const
    {
        constexpr std::size_t width = 24;
        const std::size_t filled = steps_ ? width * step / steps_ : width;
        std::string b = "epoch " + std::to_string(epoch_) + '/' + std::to_string(epochs_) + " [";
        b.append(filled, '=');
        if (filled < width) b += '>';
        b.append(width - std::min(width, filled + 1), ' ');
        return b + ']';
    }

    std::string status(std::size_t step, double mean_loss, clock::time_point now) const
    {
        const double seconds = std::chrono::duration<double>(now - start_).count();
        const double rate = seconds > 0 ? static_cast<double>(samples_) / seconds : 0;
        const std::size_t run = step - std::min(step, first_step_);
        const double eta = run > 0 ? seconds / static_cast<double>(run) * static_cast<double>(steps_ - step) : 0;
        char text[160];
        std::snprintf(text, sizeof text, "step %zu/%zu  loss %.4f  %.1f samples/s  ETA %zu:%02zu", step, steps_, mean_loss, rate,
                      static_cast<std::size_t>(eta) / 60, static_cast<std::size_t>(eta) % 60);
        return text;
    }

    std::ostream& out_;
    progress_style style_;
    std::size_t epoch_ = 0, epochs_ = 0, steps_ = 0, first_step_ = 0, samples_ = 0;
    clock::time_point start_, last_draw_;
};

}  // namespace dm2s2
