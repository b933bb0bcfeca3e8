// The Console tab: the VM's screen through noVNC and its serial port through xterm.js, each over a websocket
// opened with a single-use ticket fetched just before (a ticket lives 30 s and opens one websocket).
const root = document.getElementById("consoles");
const state = {vnc: null, serial: null};
const reasons = {4403: "refused", 4408: "closed", 4502: "unreachable"};

async function websocketUrl(kind) {
  const response = await fetch(root.dataset.ticketUrl, {
    method: "POST", credentials: "same-origin",
    headers: {"X-CSRFToken": root.dataset.csrf, "Content-Type": "application/x-www-form-urlencoded"},
    body: new URLSearchParams({kind}),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.detail || `the console refused (${response.status})`);
  return answer.url;
}

function status(kind, text) {
  document.getElementById(`${kind}-status`).textContent = text;
}

function closed(kind, event) {
  const why = event.reason || (event.code === 1006 ? "the connection was lost" : "closed");
  status(kind, `Disconnected: ${why}${reasons[event.code] ? ` (${reasons[event.code]})` : ""}. Reconnect to open it again.`);
}

async function connectScreen() {
  if (state.vnc) state.vnc.disconnect();
  status("vnc", "Connecting…");
  try {
    const {default: RFB} = await import(root.dataset.rfb);
    const screen = document.getElementById("screen");
    screen.replaceChildren();
    // Our own websocket, handed to noVNC, so that its close reason (why the console refused) can be shown.
    const socket = new WebSocket(await websocketUrl("vnc"), ["binary"]);
    socket.addEventListener("close", (event) => closed("vnc", event));
    const rfb = new RFB(screen, socket);
    rfb.scaleViewport = true;
    rfb.addEventListener("connect", () => status("vnc", "Connected."));
    state.vnc = rfb;
  } catch (error) {
    status("vnc", `Cannot open the screen: ${error.message}`);
  }
}

let terminal = null;
let fit = null;

async function connectSerial() {
  if (state.serial) state.serial.close();
  status("serial", "Connecting…");
  if (!terminal) {
    terminal = new Terminal({scrollback: 5000, convertEol: false, fontSize: 14});
    fit = new FitAddon.FitAddon();
    terminal.loadAddon(fit);
    terminal.open(document.getElementById("terminal"));
    fit.fit();
    const encoder = new TextEncoder();
    terminal.onData((data) => {
      if (state.serial && state.serial.readyState === WebSocket.OPEN) state.serial.send(encoder.encode(data));
    });
    window.addEventListener("resize", () => fit.fit());
  }
  try {
    const socket = new WebSocket(await websocketUrl("serial"));
    socket.binaryType = "arraybuffer";
    socket.onopen = () => { status("serial", "Connected. Press Enter for a prompt."); terminal.focus(); };
    socket.onmessage = (event) => terminal.write(new Uint8Array(event.data));
    socket.onclose = (event) => closed("serial", event);
    state.serial = socket;
  } catch (error) {
    status("serial", `Cannot open the serial console: ${error.message}`);
  }
}

const KEYSYMS = {"\n": 0xff0d, "\r": 0xff0d, "\t": 0xff09};

function typeText(text) {
  // Each character as a key press: guests without a clipboard agent still take it.
  for (const char of text) {
    const code = char.codePointAt(0);
    const keysym = KEYSYMS[char] || (code < 0x100 ? code : 0x01000000 + code);
    state.vnc.sendKey(keysym);
  }
}

root.addEventListener("click", (event) => {
  const button = event.target.closest("[data-console-action]");
  if (!button) return;
  const action = button.dataset.consoleAction;
  if (action === "connect") (button.dataset.kind === "vnc" ? connectScreen : connectSerial)();
  else if (action === "ctrl-alt-del" && state.vnc) state.vnc.sendCtrlAltDel();
  else if (action === "paste") document.getElementById("paste-dialog").showModal();
  else if (action === "fullscreen") {
    document.getElementById(button.dataset.target).requestFullscreen().then(() => fit && fit.fit());
  }
});

document.getElementById("paste-dialog").addEventListener("close", (event) => {
  const dialog = event.target;
  if (dialog.returnValue === "type" && state.vnc) typeText(document.getElementById("paste-text").value);
  document.getElementById("paste-text").value = "";
});

if (document.getElementById("screen")) connectScreen();
connectSerial();
