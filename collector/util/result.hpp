// Error and Result<T>: how perfstream reports failures that a caller can act on.
//
// An Error carries the errno captured at the failing call (0 when there is none) and a message that names
// the thing that failed (file, CPU, map, peer) and the cause, and where the user can do something about it,
// what. Result<T> holds either a T or an Error; it is cheap to move and never throws. Exceptions are kept
// for programming errors and for main().
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace perfstream {

class Error {
 public:
  Error() = default;
  explicit Error(std::string message, int errnum = 0) : message_(std::move(message)), errno_(errnum) {}

  // "what failed: strerror(errno)" plus an optional hint; errnum is captured by the caller at once.
  static Error from_errno(const std::string& what, int errnum, const std::string& hint = {});

  const std::string& message() const { return message_; }
  int errnum() const { return errno_; }

  // Puts context in front: "loading probe openat: " + message.
  Error with_context(const std::string& context) const& { return Error(context + ": " + message_, errno_); }

 private:
  std::string message_;
  int errno_ = 0;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::in_place_index<0>, std::move(value)) {}
  Result(Error error) : value_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const { return value_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(value_); }
  const T& value() const& { assert(ok()); return std::get<0>(value_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(value_)); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { assert(!ok()); return std::get<1>(value_); }

 private:
  std::variant<T, Error> value_;
};

// Result<void>: success or an Error.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { assert(failed_); return error_; }

 private:
  Error error_;
  bool failed_ = false;
};

using Status = Result<void>;

}  // namespace perfstream
