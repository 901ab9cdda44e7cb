// npc: a tiny game loop that asks a small model, through smolt's C API, for a non-player
// character's line of narration and for its next action as schema-constrained JSON.
//
//   make -C examples/npc                       # after: cargo build --release -p smolt-capi
//   examples/npc/npc MODEL.gguf [--adapter DIR] [--chat] [--max-tokens N] [--seed S]
//
// Each turn the game turns an event into a prompt; the model answers with one line of
// narration (streamed as it is written, stopped at the end of the line) and one action the
// game can execute: {"action": ..., "target": ..., "mood": ...}, valid by construction. One
// event is the player interrupting the bard: a second thread cancels that narration mid-way,
// as a game would when the player walks off.

#include "smolt.h"

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

// The actions the game knows how to execute: the model can only pick among them.
const char* kActionSchema = R"({
  "type": "object",
  "properties": {
    "action": {"enum": ["greet", "trade", "attack", "flee", "sing", "ignore"]},
    "target": {"enum": ["player", "goblin", "innkeeper", "bard", "nobody"]},
    "mood": {"enum": ["calm", "angry", "afraid", "merry"]}
  },
  "required": ["action", "target", "mood"],
  "additionalProperties": false
})";

struct Event {
    const char* text;
    bool interrupted;  // the player walks off while the NPC is talking
};

const Event kEvents[] = {
    {"The player walks into the tavern and waves at the innkeeper.", false},
    {"A goblin bursts through the door, waving a rusty knife.", false},
    {"The player puts five gold coins on the counter and asks for a room.", false},
    {"The bard starts a long song about the old king, and the player walks away.", true},
};

// Owns a smolt handle: released by its free function when the scope ends.
template <typename T, void (*Free)(T*)>
struct Handle {
    T* p = nullptr;
    Handle() = default;
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() { Free(p); }
};
using Model = Handle<smolt_model, smolt_model_free>;
using Session = Handle<smolt_session, smolt_session_free>;

// A result whose text is released at the end of the scope.
struct Result {
    smolt_result r{};
    ~Result() { smolt_result_free(&r); }
};

bool check(smolt_status s, const char* what) {
    if (s == SMOLT_STATUS_OK) return true;
    const char* msg = smolt_last_error();
    std::fprintf(stderr, "npc: %s failed: %s: %s\n", what, smolt_status_name(s),
                 msg ? msg : "(no message)");
    return false;
}

// Streams one line of narration to stdout; stops at the end of the line.
struct LineSink {
    std::string line;
    bool done = false;
    // For the interrupted event: the first piece wakes the "player" thread, which cancels.
    bool interrupt = false;
    std::mutex m;
    std::condition_variable cv;
    bool first_piece = false;
    bool cancel_sent = false;
    bool finished = false;  // the generation returned (perhaps without a piece)
};

int on_piece(const char* piece, void* user) {
    auto* sink = static_cast<LineSink*>(user);
    const char* nl = std::strchr(piece, '\n');
    std::string part = nl ? std::string(piece, nl) : std::string(piece);
    sink->line += part;
    std::fputs(part.c_str(), stdout);
    std::fflush(stdout);
    if (sink->interrupt) {
        std::unique_lock<std::mutex> lock(sink->m);
        if (!sink->first_piece) {
            sink->first_piece = true;
            sink->cv.notify_all();
            // Wait until the other thread has cancelled: the next token sees it.
            sink->cv.wait(lock, [&] { return sink->cancel_sent; });
        }
    }
    if (nl && !sink->line.empty()) {
        sink->done = true;
        return 1;  // one line is all the game wants
    }
    return 0;
}

const char* finish_name(smolt_finish f) {
    switch (f) {
        case SMOLT_FINISH_STOP: return "stop";
        case SMOLT_FINISH_LENGTH: return "length";
        case SMOLT_FINISH_TRUNCATED: return "truncated";
        case SMOLT_FINISH_CONTEXT_FULL: return "context_full";
        case SMOLT_FINISH_CALLBACK: return "end_of_line";
        case SMOLT_FINISH_CANCELLED: return "cancelled";
    }
    return "?";
}

struct Args {
    const char* model = nullptr;
    const char* adapter = nullptr;
    bool chat = false;
    unsigned max_tokens = 40;
    unsigned long long seed = 7;
};

bool parse(int argc, char** argv, Args& a) {
    for (int i = 1; i < argc; i++) {
        std::string s = argv[i];
        auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        if (s == "--adapter") {
            if (!(a.adapter = next())) return false;
        } else if (s == "--chat") {
            a.chat = true;
        } else if (s == "--max-tokens") {
            const char* v = next();
            if (!v) return false;
            a.max_tokens = static_cast<unsigned>(std::strtoul(v, nullptr, 10));
        } else if (s == "--seed") {
            const char* v = next();
            if (!v) return false;
            a.seed = std::strtoull(v, nullptr, 10);
        } else if (!a.model && s.rfind("--", 0) != 0) {
            a.model = argv[i];
        } else {
            return false;
        }
    }
    return a.model != nullptr;
}

}  // namespace

int main(int argc, char** argv) {
    Args args;
    if (!parse(argc, argv, args)) {
        std::fprintf(stderr,
                     "usage: npc MODEL.gguf [--adapter DIR] [--chat] [--max-tokens N] [--seed S]\n");
        return 2;
    }
    Model base;
    if (!check(smolt_model_load(args.model, &base.p), "loading the model")) return 1;
    Model tuned;
    smolt_model* model = base.p;
    if (args.adapter) {
        if (!check(smolt_model_load_adapter(base.p, args.adapter, &tuned.p), "loading the adapter"))
            return 1;
        model = tuned.p;
    }
    Session session;
    if (!check(smolt_session_new(model, &session.p), "opening a session")) return 1;
    std::printf("smolt %s, context %u tokens%s\n", smolt_version(),
                smolt_model_context_length(model), args.adapter ? ", with adapter" : "");

    const uint32_t format = args.chat ? SMOLT_PROMPT_FORMAT_CHAT : SMOLT_PROMPT_FORMAT_RAW;
    const std::string persona =
        "You are Mara, the innkeeper of the Sleeping Fox, in a fantasy game.\n";
    int turn = 0, actions = 0, cancelled = 0;
    for (const Event& ev : kEvents) {
        turn++;
        std::printf("[turn %d] event: %s\n", turn, ev.text);

        // 1. A line of narration, streamed. The prompt starts with the same persona every
        //    turn: the session does not compute those tokens again.
        std::string prompt = persona + "Event: " + ev.text + "\nMara says:";
        smolt_options o = smolt_default_options();
        o.max_tokens = args.max_tokens;
        o.temperature = 0.8f;
        o.top_p = 0.95f;
        o.seed = args.seed + turn;
        o.prompt_format = format;
        LineSink sink;
        sink.interrupt = ev.interrupted;
        std::thread player;
        if (ev.interrupted) {
            player = std::thread([&] {
                std::unique_lock<std::mutex> lock(sink.m);
                sink.cv.wait(lock, [&] { return sink.first_piece || sink.finished; });
                if (sink.finished) return;
                check(smolt_session_cancel(session.p), "cancelling");
                sink.cancel_sent = true;
                sink.cv.notify_all();
            });
        }
        std::printf("  narration: ");
        Result line;
        smolt_status s = smolt_generate(session.p, prompt.c_str(), &o, on_piece, &sink, &line.r);
        {
            std::lock_guard<std::mutex> lock(sink.m);
            sink.finished = true;
            sink.cv.notify_all();
        }
        if (player.joinable()) player.join();
        if (!check(s, "narration")) return 1;
        std::printf("\n  narration finish: %s, %u prompt tokens (%u reused), %u new\n",
                    finish_name(line.r.finish), line.r.prompt_tokens, line.r.reused_tokens,
                    line.r.output_tokens);
        if (line.r.finish == SMOLT_FINISH_CANCELLED) cancelled++;

        // 2. The NPC's next action, as JSON the game can execute.
        std::string ask = persona + "Event: " + ev.text +
                          "\nWhat does Mara do? Pick an action (greet, trade, attack, flee, sing, "
                          "ignore), its target (player, goblin, innkeeper, bard, nobody) and her "
                          "mood (calm, angry, afraid, merry), as JSON:";
        smolt_options a = smolt_default_options();
        a.max_tokens = 64;
        a.json_schema = kActionSchema;
        a.prompt_format = format;
        Result action;
        if (!check(smolt_generate(session.p, ask.c_str(), &a, nullptr, nullptr, &action.r),
                   "choosing an action"))
            return 1;
        std::printf("  action: %s\n", action.r.text);
        actions++;
    }
    std::printf("done: %d turns, %d actions, %d cancelled\n", turn, actions, cancelled);
    return 0;
}
