// Config: defaults -> file -> --set overrides, and every error path.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "core/config.h"
#include "test_util.h"

namespace m3ret {
namespace {

struct Inner {
  double lr = 0.001;
  std::vector<int64_t> ks = {1, 5, 10};
  template <class V>
  void visit(V& v) {
    v("lr", lr, "learning rate", config::Range{0.0, 1.0});
    v("ks", ks, "k values", config::Range{1, 1000});
  }
};

struct Train {
  int64_t max_steps = 100;
  int workers = 2;
  bool deterministic = false;
  std::string objective = "simdino";
  std::vector<std::string> modalities = {"ct", "xray"};
  std::vector<double> window = {-1000.0, 1000.0};
  Inner optim;
  template <class V>
  void visit(V& v) {
    v("max_steps", max_steps, "steps", config::Range{1, 1e9});
    v("workers", workers, "threads", config::Range{0, 64});
    v("deterministic", deterministic, "bitwise reproducible");
    v("objective", objective, "objective", config::OneOf{{"mae", "simdino", "mae+simdino"}});
    v("modalities", modalities, "modalities");
    v("window", window, "window");
    v.section("optim", optim);
  }
  void validate() const {
    if (window.size() != 2) throw config::Error("config key 'train.window' needs 2 values");
  }
};

struct Root {
  Train train;
  template <class V>
  void visit(V& v) {
    v.section("train", train);
  }
};

class ConfigTest : public ::testing::Test {
 protected:
  std::filesystem::path write(const std::string& text) {
    auto p = dir_.path() / ("c" + std::to_string(n_++) + ".toml");
    std::ofstream(p) << text;
    return p;
  }
  testing::TempDir dir_{"config"};
  int n_ = 0;
};

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const config::Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST_F(ConfigTest, DefaultsWhenNothingGiven) {
  Root r = config::load<Root>(std::nullopt, {});
  EXPECT_EQ(r.train.max_steps, 100);
  EXPECT_EQ(r.train.objective, "simdino");
  EXPECT_DOUBLE_EQ(r.train.optim.lr, 0.001);
}

TEST_F(ConfigTest, FileThenOverridesInOrder) {
  auto f = write(R"(
[train]
max_steps = 500
objective = "mae"
modalities = ["ct"]
[train.optim]
lr = 0.01
ks = [1, 2]
)");
  Root r = config::load<Root>(f, {"train.max_steps=7", "train.optim.lr=0.5",
                                  "train.objective=mae+simdino", "train.deterministic=true",
                                  "train.modalities=[\"xray\", \"ct\"]", "train.window=[0, 1.5]"});
  EXPECT_EQ(r.train.max_steps, 7);
  EXPECT_DOUBLE_EQ(r.train.optim.lr, 0.5);
  EXPECT_EQ(r.train.objective, "mae+simdino");
  EXPECT_TRUE(r.train.deterministic);
  EXPECT_EQ(r.train.modalities, (std::vector<std::string>{"xray", "ct"}));
  EXPECT_EQ(r.train.window, (std::vector<double>{0.0, 1.5}));
  EXPECT_EQ(r.train.optim.ks, (std::vector<int64_t>{1, 2}));  // from the file
}

TEST_F(ConfigTest, LaterOverrideWins) {
  Root r = config::load<Root>(std::nullopt, {"train.max_steps=3", "train.max_steps=4"});
  EXPECT_EQ(r.train.max_steps, 4);
}

TEST_F(ConfigTest, QuotedStringOverride) {
  Root r = config::load<Root>(std::nullopt, {"train.objective=\"mae\""});
  EXPECT_EQ(r.train.objective, "mae");
}

TEST_F(ConfigTest, UnknownKeyInFileNamesKeyFileAndLine) {
  auto f = write("[train]\nmax_steps = 5\nmax_stepz = 6\n");
  auto msg = error_of([&] { config::load<Root>(f, {}); });
  EXPECT_NE(msg.find("unknown config key 'train.max_stepz'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(f.string() + ":3"), std::string::npos) << msg;
}

TEST_F(ConfigTest, UnknownSectionInFile) {
  auto f = write("[trian]\nmax_steps = 5\n");
  auto msg = error_of([&] { config::load<Root>(f, {}); });
  EXPECT_NE(msg.find("unknown config section 'trian'"), std::string::npos) << msg;
}

TEST_F(ConfigTest, UnknownKeyInOverride) {
  auto msg = error_of([&] { config::load<Root>(std::nullopt, {"train.nope=1"}); });
  EXPECT_NE(msg.find("unknown config key 'train.nope'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--set"), std::string::npos) << msg;
}

TEST_F(ConfigTest, WrongTypeInFile) {
  auto f = write("[train]\nmax_steps = \"many\"\n");
  auto msg = error_of([&] { config::load<Root>(f, {}); });
  EXPECT_NE(msg.find("'train.max_steps' must be an integer, got string"), std::string::npos) << msg;
  EXPECT_NE(msg.find(f.string() + ":2"), std::string::npos) << msg;
}

TEST_F(ConfigTest, WrongTypeInOverride) {
  auto msg = error_of([&] { config::load<Root>(std::nullopt, {"train.deterministic=yes"}); });
  EXPECT_NE(msg.find("train.deterministic"), std::string::npos) << msg;
  msg = error_of([&] { config::load<Root>(std::nullopt, {"train.max_steps=1.5"}); });
  EXPECT_NE(msg.find("'train.max_steps' must be an integer, got floating-point"), std::string::npos)
      << msg;
  msg = error_of([&] { config::load<Root>(std::nullopt, {"train.modalities=[1, 2]"}); });
  EXPECT_NE(msg.find("'train.modalities' must be an array of strings"), std::string::npos) << msg;
}

TEST_F(ConfigTest, OutOfRange) {
  auto msg = error_of([&] { config::load<Root>(std::nullopt, {"train.max_steps=0"}); });
  EXPECT_NE(msg.find("'train.max_steps' = 0 is out of range [1, "), std::string::npos) << msg;
  msg = error_of([&] { config::load<Root>(std::nullopt, {"train.optim.ks=[1, 0]"}); });
  EXPECT_NE(msg.find("'train.optim.ks'"), std::string::npos) << msg;
  msg = error_of([&] { config::load<Root>(std::nullopt, {"train.workers=100000000000"}); });
  EXPECT_NE(msg.find("'train.workers'"), std::string::npos) << msg;
}

TEST_F(ConfigTest, NotOneOf) {
  auto f = write("[train]\nobjective = \"byol\"\n");
  auto msg = error_of([&] { config::load<Root>(f, {}); });
  EXPECT_NE(msg.find("'train.objective' = 'byol' is not one of {mae, simdino, mae+simdino}"),
            std::string::npos)
      << msg;
}

TEST_F(ConfigTest, ValidateRunsAfterBinding) {
  auto msg = error_of([&] { config::load<Root>(std::nullopt, {"train.window=[1.0]"}); });
  EXPECT_NE(msg.find("train.window"), std::string::npos) << msg;
}

TEST_F(ConfigTest, SectionGivenAsValue) {
  auto f = write("train = 5\n");
  auto msg = error_of([&] { config::load<Root>(f, {}); });
  EXPECT_NE(msg.find("'train' must be a table"), std::string::npos) << msg;
}

TEST_F(ConfigTest, SyntaxErrorNamesFileAndLine) {
  auto f = write("[train]\nmax_steps = = 3\n");
  auto msg = error_of([&] { config::load<Root>(f, {}); });
  EXPECT_NE(msg.find(f.string() + ":2"), std::string::npos) << msg;
}

TEST_F(ConfigTest, MissingFile) {
  auto msg = error_of([&] { config::load<Root>(dir_.path() / "nope.toml", {}); });
  EXPECT_NE(msg.find("nope.toml"), std::string::npos) << msg;
}

TEST_F(ConfigTest, MalformedOverride) {
  EXPECT_NE(error_of([&] {
              config::load<Root>(std::nullopt, {"train.max_steps"});
            }).find("expected KEY=VALUE"),
            std::string::npos);
  EXPECT_NE(error_of([&] { config::load<Root>(std::nullopt, {"=3"}); }).find("expected KEY=VALUE"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { config::load<Root>(std::nullopt, {"train..x=3"}); }).find("malformed key"),
      std::string::npos);
  EXPECT_NE(error_of([&] {
              config::load<Root>(std::nullopt, {"train.max_steps=[1,"});
            }).find("is not a TOML value"),
            std::string::npos);
  // More TOML after the value is refused, not silently dropped.
  EXPECT_NE(error_of([&] {
              config::load<Root>(std::nullopt, {"train.max_steps=3\nworkers = 5"});
            }).find("more than one TOML value"),
            std::string::npos);
}

// `base = "other.toml"`: the other file first, relative to this file's folder (not the
// working directory), recursively; this file's keys and then --set win key by key.
TEST_F(ConfigTest, BaseFileIsReadFirstAndOverriddenKeyByKey) {
  const auto sub = dir_.path() / "sub";
  std::filesystem::create_directories(sub);
  std::ofstream(sub / "root.toml") << "[train]\nmax_steps = 500\nworkers = 3\n"
                                      "[train.optim]\nlr = 0.25\nks = [1, 2]\n";
  std::ofstream(sub / "middle.toml") << "base = \"root.toml\"\n[train]\nworkers = 4\n"
                                        "objective = \"mae\"\n";
  std::ofstream(dir_.path() / "top.toml") << "base = \"sub/middle.toml\"\n[train]\n"
                                             "objective = \"mae+simdino\"\n[train.optim]\n"
                                             "ks = [5]\n";
  Root r = config::load<Root>(dir_.path() / "top.toml", {"train.workers=7"});
  EXPECT_EQ(r.train.max_steps, 500);            // root.toml
  EXPECT_EQ(r.train.workers, 7);                // --set over middle.toml's 4 over root's 3
  EXPECT_EQ(r.train.objective, "mae+simdino");  // top.toml over middle.toml
  EXPECT_DOUBLE_EQ(r.train.optim.lr, 0.25);     // root.toml, in a sub-table top.toml touches
  EXPECT_EQ(r.train.optim.ks, (std::vector<int64_t>{5}));  // arrays are replaced, not merged

  config::Document doc;
  doc.add_file(dir_.path() / "top.toml");
  ASSERT_EQ(doc.files().size(), 3u);
  EXPECT_EQ(doc.files()[0].filename(), "root.toml");
  EXPECT_EQ(doc.files()[2].filename(), "top.toml");

  // An error in a base file names that file and line, not the file that extends it.
  std::ofstream(sub / "root.toml") << "[train]\nmax_steps = \"many\"\n";
  auto msg = error_of([&] { config::load<Root>(dir_.path() / "top.toml", {}); });
  EXPECT_NE(msg.find("'train.max_steps' must be an integer"), std::string::npos) << msg;
  EXPECT_NE(msg.find((sub / "root.toml").string() + ":2"), std::string::npos) << msg;
}

TEST_F(ConfigTest, BadBaseIsRefusedNamingTheFileAndValue) {
  auto missing = write("base = \"nowhere.toml\"\n[train]\nmax_steps = 5\n");
  auto msg = error_of([&] { config::load<Root>(missing, {}); });
  EXPECT_NE(msg.find("config key 'base' at " + missing.string() + ":1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'nowhere.toml'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;

  auto typed = write("base = 3\n");
  msg = error_of([&] { config::load<Root>(typed, {}); });
  EXPECT_NE(msg.find("config key 'base' at " + typed.string() + ":1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("got integer"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { config::load<Root>(write("base = \"\"\n"), {}); }).find("non-empty"),
            std::string::npos);

  // A file that extends itself, directly or through another, is refused.
  std::ofstream(dir_.path() / "self.toml") << "base = \"./self.toml\"\n";
  msg = error_of([&] { config::load<Root>(dir_.path() / "self.toml", {}); });
  EXPECT_NE(msg.find("leads back to a file already being read"), std::string::npos) << msg;
  std::ofstream(dir_.path() / "a.toml") << "base = \"b.toml\"\n";
  std::ofstream(dir_.path() / "b.toml") << "base = \"a.toml\"\n";
  msg = error_of([&] { config::load<Root>(dir_.path() / "a.toml", {}); });
  EXPECT_NE(msg.find("leads back to a file already being read"), std::string::npos) << msg;
  EXPECT_NE(msg.find("b.toml -> "), std::string::npos) << msg;

  // Only a file has a folder to resolve `base` against; --set cannot set it.
  config::Document doc;
  msg = error_of([&] { doc.add_text("base = \"x.toml\"\n", "inline"); });
  EXPECT_NE(msg.find("only a config file can extend another"), std::string::npos) << msg;
  msg = error_of([&] { config::load<Root>(std::nullopt, {"base=x.toml"}); });
  EXPECT_NE(msg.find("unknown config key 'base'"), std::string::npos) << msg;
}

TEST_F(ConfigTest, FloatsAreWrittenAsShortAsTheyReadBackExactly) {
  Root r;
  r.train.modalities = {"0.90000000000000002", "lr = 0.10000000000000001"};  // strings stay
  const double lrs[] = {0.9, 0.1, 1e-06, 0.00015, 1.0 / 3, 0.0};             // lr's range is [0, 1]
  const double others[] = {123456789.125, 1e300, 7.0, -2.5e-8, 0.1, 1.0 / 3};
  for (size_t i = 0; i < std::size(lrs); ++i) {
    r.train.optim.lr = lrs[i];
    r.train.window = {-1000.0, others[i]};
    const std::string text = config::to_toml(r);
    Root back = config::load<Root>(write(text), {});
    EXPECT_EQ(back.train.optim.lr, r.train.optim.lr) << text;  // bit-exact
    EXPECT_EQ(back.train.window, r.train.window) << text;
    EXPECT_EQ(back.train.modalities, r.train.modalities) << text;
  }
  r.train.window = {-1000.0, 0.1};
  r.train.optim.lr = 0.9;
  const std::string text = config::to_toml(r);
  EXPECT_NE(text.find("lr = 0.9\n"), std::string::npos) << text;
  EXPECT_NE(text.find("window = [ -1000.0, 0.1 ]"), std::string::npos) << text;
  EXPECT_NE(text.find("'0.90000000000000002'"), std::string::npos) << text;
  EXPECT_NE(text.find("'lr = 0.10000000000000001'"), std::string::npos) << text;
  r.train.window = {-1000.0, 7.0};
  EXPECT_NE(config::to_toml(r).find("window = [ -1000.0, 7.0 ]"), std::string::npos)
      << config::to_toml(r);
}

TEST_F(ConfigTest, ResolvedTomlRoundTrips) {
  Root r = config::load<Root>(std::nullopt, {"train.max_steps=42", "train.optim.lr=0.25"});
  auto f = write(config::to_toml(r));
  Root back = config::load<Root>(f, {});
  EXPECT_EQ(back.train.max_steps, 42);
  EXPECT_DOUBLE_EQ(back.train.optim.lr, 0.25);
  EXPECT_EQ(back.train.modalities, r.train.modalities);
  EXPECT_EQ(back.train.window, r.train.window);
  EXPECT_EQ(config::to_toml(back), config::to_toml(r));
}

TEST_F(ConfigTest, ListerShowsEveryKeyWithDefault) {
  Root r;
  config::Lister l;
  r.visit(l);
  std::string all;
  for (const auto& s : l.lines()) all += s + "\n";
  EXPECT_NE(all.find("train.max_steps = 100"), std::string::npos) << all;
  EXPECT_NE(all.find("train.optim.lr = 0.001"), std::string::npos) << all;
}

}  // namespace
}  // namespace m3ret

namespace m3ret {
namespace {

struct WithAuto {
  config::AutoNumber gamma;
  template <class V>
  void visit(V& v) {
    v("gamma", gamma, "auto or a number", config::Range{0, 10});
  }
};
struct AutoRoot {
  WithAuto s;
  template <class V>
  void visit(V& v) {
    v.section("s", s);
  }
};

AutoRoot load_auto(const std::string& toml, const std::vector<std::string>& sets) {
  config::Document doc;
  if (!toml.empty()) doc.add_text(toml, "t.toml");
  for (const auto& o : sets) doc.add_override(o);
  AutoRoot r;
  doc.bind("", r);
  doc.check_all_used();
  return r;
}

TEST(ConfigAutoNumber, AutoOrANumberFromFilesAndOverridesAndWrittenBackAsGiven) {
  EXPECT_TRUE(load_auto("", {}).s.gamma.is_auto());  // default
  EXPECT_TRUE(load_auto("[s]\ngamma = \"auto\"\n", {}).s.gamma.is_auto());
  EXPECT_DOUBLE_EQ(*load_auto("[s]\ngamma = 0.035\n", {}).s.gamma.value, 0.035);
  EXPECT_DOUBLE_EQ(*load_auto("[s]\ngamma = 2\n", {}).s.gamma.value, 2.0);
  EXPECT_DOUBLE_EQ(*load_auto("[s]\ngamma = \"auto\"\n", {"s.gamma=0.5"}).s.gamma.value, 0.5);
  EXPECT_TRUE(load_auto("[s]\ngamma = 0.5\n", {"s.gamma=auto"}).s.gamma.is_auto());
  EXPECT_TRUE(load_auto("", {"s.gamma=\"auto\""}).s.gamma.is_auto());
  // Written back as given, and read again.
  auto r = load_auto("[s]\ngamma = 0.25\n", {});
  EXPECT_NE(config::to_toml(r).find("gamma = 0.25"), std::string::npos) << config::to_toml(r);
  auto a = load_auto("", {});
  EXPECT_NE(config::to_toml(a).find("gamma = 'auto'"), std::string::npos) << config::to_toml(a);
  EXPECT_TRUE(load_auto(config::to_toml(a), {}).s.gamma.is_auto());
  // Errors name the key and the origin.
  auto fails = [](const std::string& toml, const std::vector<std::string>& sets,
                  const std::string& part) {
    try {
      load_auto(toml, sets);
      ADD_FAILURE() << "no error for " << toml;
    } catch (const config::Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  fails("[s]\ngamma = \"often\"\n", {},
        "'s.gamma' = 'often' must be \"auto\" or a number (t.toml:2");
  fails("[s]\ngamma = true\n", {}, "'s.gamma' must be \"auto\" or a number");
  fails("[s]\ngamma = 11\n", {}, "out of range");
  fails("", {"s.gamma=-1"}, "out of range");
}

}  // namespace
}  // namespace m3ret
