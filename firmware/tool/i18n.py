"""The tool's messages in French, Arabic and English.

French is the default: the field teams' working language. The language is
--lang, else $UMMC_LANG, else the first two letters of $LANG (`ar_MA.UTF-8`
-> ar, `en_GB.UTF-8` -> en); anything else gives French. Each message is
one entry (fr, ar, en) with `{name}` fields; tests/firmware_tool/
test_messages.py checks that every key used in the code is here, in all
three languages, with the same fields. Technical words a technician types
or reads on a screen (paths, ids, `--options`, field names like
`uplink.broker_host`) stay as they are in every language."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LANGS = ("fr", "ar", "en")
DEFAULT = "fr"

CATALOG: dict[str, tuple[str, str, str]] = {
    # --- general -----------------------------------------------------------------
    "usage": (
        "Commande incorrecte : {detail}. Aide : {prog} --help",
        "أمر غير صحيح: {detail}. للمساعدة: {prog} --help",
        "Bad command: {detail}. Help: {prog} --help"),
    "exit_code": (
        "(code de sortie {code})",
        "(رمز الخروج {code})",
        "(exit code {code})"),
    "internal": (
        "Erreur interne de l'outil : {detail}. Signalez-la à l'équipe technique.",
        "خطأ داخلي في الأداة: {detail}. يرجى إبلاغ الفريق التقني.",
        "Internal error in the tool: {detail}. Please report it to the technical team."),
    "interrupted": (
        "Interrompu.",
        "تم الإيقاف.",
        "Interrupted."),
    "need_target": (
        "Indiquez où est la passerelle : --port /dev/ttyUSB0 (une carte) ou --virtual DOSSIER.",
        "حدد مكان البوابة: ‎--port /dev/ttyUSB0‎ (لوحة) أو ‎--virtual DOSSIER‎.",
        "Say where the gateway is: --port /dev/ttyUSB0 (a board) or --virtual DIR."),
    "no_answer": (
        "Aucune réponse saisie.",
        "لم يتم إدخال أي إجابة.",
        "No answer was typed."),
    "restarting": (
        "La passerelle redémarre.",
        "البوابة تعيد التشغيل.",
        "The gateway is restarting."),
    "virtual_restart_hint": (
        "Passerelle virtuelle : redémarrez-la pour appliquer la configuration.",
        "بوابة افتراضية: أعد تشغيلها لتطبيق الإعدادات.",
        "Virtual gateway: restart it to apply the configuration."),
    # --- where the gateway is -------------------------------------------------------
    "port_missing": (
        "Aucune carte sur {port} : vérifiez le câble USB et le nom du port.",
        "لا توجد لوحة على {port}: تحقق من كابل USB واسم المنفذ.",
        "No board on {port}: check the USB cable and the port name."),
    "board_silent": (
        "La carte sur {port} ne répond pas ({detail}). Débranchez-la, rebranchez-la, réessayez.",
        "اللوحة على {port} لا تستجيب ({detail}). افصلها ثم أعد توصيلها وحاول مجددا.",
        "The board on {port} does not answer ({detail}). Unplug it, plug it back, try again."),
    "board_no_return": (
        "La carte sur {port} n'est pas revenue après le redémarrage.",
        "لم تعد اللوحة على {port} بعد إعادة التشغيل.",
        "The board on {port} did not come back after its restart."),
    "virtual_missing": (
        "Pas de passerelle virtuelle dans {path} (dossier introuvable).",
        "لا توجد بوابة افتراضية في {path} (المجلد غير موجود).",
        "No virtual gateway in {path} (no such directory)."),
    "write_failed": (
        "Écriture impossible sur la carte {port} : {detail}",
        "تعذرت الكتابة على اللوحة {port}: {detail}",
        "Could not write to the board on {port}: {detail}"),
    "copy_failed": (
        "La copie vers la carte {port} a échoué : {detail}",
        "فشل النسخ إلى اللوحة {port}: {detail}",
        "Copying to the board on {port} failed: {detail}"),
    "readback_failed": (
        "Relecture impossible sur la carte {port} : {detail}",
        "تعذرت إعادة القراءة من اللوحة {port}: {detail}",
        "Could not read back from the board on {port}: {detail}"),
    # --- flash ---------------------------------------------------------------------
    "bundle_missing": (
        "Paquet du firmware introuvable : {path}",
        "حزمة البرنامج الثابت غير موجودة: {path}",
        "Firmware bundle not found: {path}"),
    "bundle_refused": (
        "Paquet du firmware REFUSÉ ({reason}) : {detail}. Rien n'a été écrit.",
        "تم رفض حزمة البرنامج الثابت ({reason}): {detail}. لم تتم كتابة أي شيء.",
        "Firmware bundle REFUSED ({reason}): {detail}. Nothing was written."),
    "bad_trust_key": (
        "Clé de confiance inutilisable : {detail}",
        "مفتاح الثقة غير صالح: {detail}",
        "Trusted key unusable: {detail}"),
    "no_trust_key": (
        "Il faut la clé publique de la flotte : --trust FICHIER.pub (ou ${env}).",
        "يلزم المفتاح العام للأسطول: ‎--trust FICHIER.pub‎ (أو ${env}).",
        "The fleet's public key is needed: --trust FILE.pub (or ${env})."),
    "bundle_ok": (
        "Paquet ummc {version} authentique et intact ({n} fichiers).",
        "الحزمة ummc {version} أصلية وسليمة ({n} ملفات).",
        "Bundle ummc {version} is genuine and whole ({n} files)."),
    "image_needs_board": (
        "--image sert à une vraie carte (--port) ; une passerelle virtuelle n'a pas d'image.",
        "‎--image‎ خاص باللوحة الحقيقية (‎--port‎)؛ البوابة الافتراضية ليس لها صورة.",
        "--image is for a real board (--port); a virtual gateway has no base image."),
    "image_missing": (
        "Image MicroPython introuvable : {path}",
        "صورة MicroPython غير موجودة: {path}",
        "MicroPython image not found: {path}"),
    "erasing": (
        "Effacement de la mémoire",
        "مسح الذاكرة",
        "Erasing the flash"),
    "writing_image": (
        "Écriture de MicroPython",
        "كتابة MicroPython",
        "Writing MicroPython"),
    "esptool_failed": (
        "esptool a échoué : {detail}. Maintenez BOOT appuyé pendant la connexion et réessayez.",
        "فشل esptool: {detail}. اضغط على زر BOOT أثناء الاتصال وحاول مجددا.",
        "esptool failed: {detail}. Hold BOOT down while it connects and try again."),
    "image_written": (
        "MicroPython écrit ({image}).",
        "تمت كتابة MicroPython ({image}).",
        "MicroPython written ({image})."),
    "deploy_start": (
        "Installation de ummc {version} dans {slot} sur {where}",
        "تثبيت ummc {version} في {slot} على {where}",
        "Installing ummc {version} into {slot} on {where}"),
    "copying": (
        "Copie des fichiers",
        "نسخ الملفات",
        "Copying files"),
    "verifying": (
        "Relecture et vérification de {n} fichiers (SHA-256)...",
        "إعادة قراءة {n} ملفات والتحقق منها (SHA-256)...",
        "Reading back and checking {n} files (SHA-256)..."),
    "verify_missing": (
        "Vérification ÉCHOUÉE : {path} manque sur la passerelle.",
        "فشل التحقق: الملف {path} غير موجود على البوابة.",
        "Verification FAILED: {path} is missing on the gateway."),
    "verify_mismatch": (
        "Vérification ÉCHOUÉE : {path} relu ne correspond pas au paquet.",
        "فشل التحقق: الملف {path} المقروء لا يطابق الحزمة.",
        "Verification FAILED: {path} read back does not match the bundle."),
    "verify_extra": (
        "Vérification ÉCHOUÉE : fichier en trop sur la passerelle : {path}",
        "فشل التحقق: ملف زائد على البوابة: {path}",
        "Verification FAILED: extra file on the gateway: {path}"),
    "deploy_done": (
        "ummc {version} installé dans {slot} : {n} fichiers relus et identiques.",
        "تم تثبيت ummc {version} في {slot}: {n} ملفات أعيدت قراءتها ومطابقة.",
        "ummc {version} installed in {slot}: {n} files read back, all identical."),
    "flash_done": (
        "Flash terminé sur {where}.",
        "اكتملت عملية التحميل على {where}.",
        "Flash complete on {where}."),
    # --- configuration and provisioning ----------------------------------------------
    "config_not_json": (
        "Configuration illisible : config.json n'est pas du JSON valide.",
        "الإعدادات غير مقروءة: config.json ليس JSON صالحا.",
        "Configuration unreadable: config.json is not valid JSON."),
    "config_field": (
        "Configuration refusée : champ {path} — {detail}",
        "الإعدادات مرفوضة: الحقل {path} — {detail}",
        "Configuration refused: field {path} — {detail}"),
    "not_provisioned": (
        "Passerelle non configurée ({where}) : lancez d'abord « provision ».",
        "البوابة غير مهيأة ({where}): شغّل أولا الأمر provision.",
        "Gateway not provisioned ({where}): run `provision` first."),
    "bad_broker_url": (
        "Adresse du broker invalide : {url} (attendu mqtts://hôte:port ou mqtt://hôte:port)",
        "عنوان الوسيط غير صالح: {url} (المطلوب mqtts://host:port أو mqtt://host:port)",
        "Bad broker address: {url} (expected mqtts://host:port or mqtt://host:port)"),
    "wifi_or_apn": (
        "Choisissez Wi-Fi (--wifi-ssid) OU modem (--apn), pas les deux.",
        "اختر Wi-Fi ‏(‎--wifi-ssid‎) أو المودم (‎--apn‎)، وليس كليهما.",
        "Choose Wi-Fi (--wifi-ssid) OR modem (--apn), not both."),
    "network_needs_mode": (
        "Réseau incomplet : donnez --wifi-ssid, --apn ou --network.",
        "الشبكة غير مكتملة: أدخل ‎--wifi-ssid‎ أو ‎--apn‎ أو ‎--network‎.",
        "Network incomplete: give --wifi-ssid, --apn or --network."),
    "provisioned": (
        "Passerelle {gateway} de l'unité {unit} configurée (version {version}) sur {where}.",
        "تمت تهيئة البوابة {gateway} للوحدة {unit} (الإصدار {version}) على {where}.",
        "Gateway {gateway} of unit {unit} provisioned (version {version}) on {where}."),
    "provision_network": (
        "  Réseau : {mode} ({detail})",
        "  الشبكة: {mode} ({detail})",
        "  Network: {mode} ({detail})"),
    "provision_broker": (
        "  Broker : {host}:{port} ({tls})",
        "  الوسيط: {host}:{port} ({tls})",
        "  Broker: {host}:{port} ({tls})"),
    "no_tls": (
        "sans TLS",
        "بدون TLS",
        "no TLS"),
    "password_given": (
        "  Mot de passe du broker : celui donné avec --password.",
        "  كلمة مرور الوسيط: المعطاة مع ‎--password‎.",
        "  Broker password: the one given with --password."),
    "password_generated": (
        "  Mot de passe du broker : nouveau, généré (32 caractères).",
        "  كلمة مرور الوسيط: جديدة، تم توليدها (32 حرفا).",
        "  Broker password: new, generated (32 characters)."),
    "password_kept": (
        "  Mot de passe du broker : inchangé.",
        "  كلمة مرور الوسيط: دون تغيير.",
        "  Broker password: unchanged."),
    "account_file": (
        "  Compte à transmettre à l'administrateur de la flotte : {path}\n"
        "  Il l'enregistre avec :",
        "  الحساب الذي يجب تسليمه لمسؤول الأسطول: {path}\n"
        "  يقوم بتسجيله بالأوامر:",
        "  Account to hand to the fleet administrator: {path}\n"
        "  They register it with:"),
    "password_issued": (
        "  Mot de passe du broker : délivré par le serveur de flotte, qui connaît déjà la "
        "passerelle (aucun fichier à transmettre).",
        "  كلمة مرور الوسيط: صادرة عن خادم الأسطول الذي يعرف البوابة مسبقا (لا ملف لتسليمه).",
        "  Broker password: issued by the fleet server, which already knows the gateway "
        "(no file to hand over)."),
    "fleet_registered": (
        "  Passerelle {gateway} enregistrée à l'unité {unit} sur le serveur de flotte.",
        "  تم تسجيل البوابة {gateway} في الوحدة {unit} لدى خادم الأسطول.",
        "  Gateway {gateway} registered to unit {unit} on the fleet server."),
    "fleet_not_reloaded": (
        "  ATTENTION : le broker n'a pas été rechargé ; le mot de passe marchera après son "
        "prochain rechargement (prévenez l'administrateur).",
        "  تنبيه: لم تتم إعادة تحميل الوسيط؛ ستعمل كلمة المرور بعد إعادة تحميله القادمة "
        "(أخبر المسؤول).",
        "  WARNING: the broker was not reloaded; the password works after its next reload "
        "(tell the administrator)."),
    "fleet_or_password": (
        "--fleet-url et --password s'excluent : le serveur de flotte délivre le mot de passe.",
        "‎--fleet-url‎ و ‎--password‎ لا يجتمعان: خادم الأسطول هو من يصدر كلمة المرور.",
        "--fleet-url and --password exclude each other: the fleet server issues the "
        "password."),
    "fleet_needs_token": (
        "--fleet-url demande un jeton : --fleet-token JETON (ou la variable UMMC_FLEET_TOKEN).",
        "‎--fleet-url‎ يحتاج رمزا: ‎--fleet-token JETON‎ (أو المتغير UMMC_FLEET_TOKEN).",
        "--fleet-url needs a token: --fleet-token TOKEN (or the UMMC_FLEET_TOKEN variable)."),
    "bad_fleet_url": (
        "Adresse du serveur de flotte invalide : {url} (attendu https://hôte ou http://hôte)",
        "عنوان خادم الأسطول غير صالح: {url} (المطلوب https://host أو http://host)",
        "Bad fleet server address: {url} (expected https://host or http://host)"),
    "fleet_unreachable": (
        "Serveur de flotte {url} injoignable : {detail}",
        "لا يمكن الوصول إلى خادم الأسطول {url}: {detail}",
        "Fleet server {url} unreachable: {detail}"),
    "fleet_token_refused": (
        "Le serveur de flotte refuse le jeton (expiré ou faux) : demandez-en un nouveau.",
        "خادم الأسطول يرفض الرمز (منتهي الصلاحية أو خاطئ): اطلب رمزا جديدا.",
        "The fleet server refuses the token (expired or wrong): get a new one."),
    "fleet_forbidden": (
        "Votre compte sur le serveur de flotte ne peut pas délivrer d'identifiants ({detail}).",
        "حسابك لدى خادم الأسطول لا يسمح بإصدار بيانات الدخول ({detail}).",
        "Your fleet server account may not issue credentials ({detail})."),
    "fleet_refused": (
        "Le serveur de flotte refuse : {detail}",
        "خادم الأسطول يرفض: {detail}",
        "The fleet server refuses: {detail}"),
    "fleet_error": (
        "Erreur du serveur de flotte (HTTP {status}) : {detail}",
        "خطأ في خادم الأسطول (HTTP {status}): {detail}",
        "Fleet server error (HTTP {status}): {detail}"),
    "tls_needs_ca": (
        "TLS : il faut le certificat CA du broker de la flotte (--ca FICHIER.pem).",
        "TLS: يلزم شهادة CA لوسيط الأسطول (‎--ca FICHIER.pem‎).",
        "TLS: the fleet broker's CA certificate is needed (--ca FILE.pem)."),
    "cert_and_key": (
        "--client-cert et --client-key vont ensemble.",
        "‎--client-cert‎ و ‎--client-key‎ يُستعملان معا.",
        "--client-cert and --client-key go together."),
    "file_missing": (
        "Fichier introuvable : {path}",
        "الملف غير موجود: {path}",
        "File not found: {path}"),
    "not_pem": (
        "{path} n'est pas un fichier PEM ({what}).",
        "{path} ليس ملف PEM ‏({what}).",
        "{path} is not a PEM file ({what})."),
    "ca_written": (
        "  Certificat CA du broker installé (ca.pem).",
        "  تم تثبيت شهادة CA للوسيط (ca.pem).",
        "  Broker CA certificate installed (ca.pem)."),
    "client_cert_written": (
        "  Certificat client TLS installé (client.pem, client.key).",
        "  تم تثبيت شهادة العميل TLS ‏(client.pem، client.key).",
        "  TLS client certificate installed (client.pem, client.key)."),
    "label_saved": (
        "Étiquette QR enregistrée : {path}",
        "تم حفظ ملصق QR: {path}",
        "QR label saved: {path}"),
    # --- pairing -------------------------------------------------------------------
    "ble_missing": (
        "Bluetooth indisponible ({spec}) : {detail}",
        "البلوتوث غير متاح ({spec}): {detail}",
        "Bluetooth unavailable ({spec}): {detail}"),
    "ble_needed": (
        "Passerelle virtuelle : indiquez le Bluetooth de cet ordinateur avec --ble (ex. usb:0).",
        "بوابة افتراضية: حدد بلوتوث هذا الحاسوب بـ ‎--ble‎ (مثلا usb:0).",
        "Virtual gateway: give this computer's Bluetooth with --ble (e.g. usb:0)."),
    "scanning": (
        "Recherche des instruments",
        "البحث عن الأجهزة",
        "Looking for instruments"),
    "scanning_board": (
        "Recherche des instruments par la carte ({seconds} s)...",
        "البحث عن الأجهزة عبر اللوحة ({seconds} ثانية)...",
        "The board is looking for instruments ({seconds} s)..."),
    "board_scan_failed": (
        "La recherche Bluetooth sur la carte {port} a échoué : {detail}",
        "فشل البحث بالبلوتوث على اللوحة {port}: {detail}",
        "The Bluetooth search on the board {port} failed: {detail}"),
    "none_found": (
        "Aucun instrument trouvé. Allumez-le (ou lancez une mesure) tout près et réessayez.",
        "لم يتم العثور على أي جهاز. شغّله (أو ابدأ قياسا) بالقرب وحاول مجددا.",
        "No instrument found. Switch it on (or take a measurement) close by and try again."),
    "addr_not_found": (
        "L'instrument {addr} n'a pas été vu. Allumez-le tout près et réessayez.",
        "لم يتم رصد الجهاز {addr}. شغّله بالقرب وحاول مجددا.",
        "Instrument {addr} was not seen. Switch it on close by and try again."),
    "found_list": (
        "{n} instrument(s) trouvé(s) :",
        "تم العثور على {n} جهاز (أجهزة):",
        "{n} instrument(s) found:"),
    "ask_choice": (
        "Numéro de l'instrument (1-{n}) :",
        "رقم الجهاز (1-{n}):",
        "Instrument number (1-{n}):"),
    "bad_choice": (
        "Choix « {answer} » invalide : tapez un numéro de 1 à {n}.",
        "الاختيار \"{answer}\" غير صالح: اكتب رقما من 1 إلى {n}.",
        "Choice \"{answer}\" is not valid: type a number from 1 to {n}."),
    "ask_pin": (
        "Code PIN affiché par l'instrument (6 chiffres, Entrée si aucun) :",
        "الرمز السري PIN الظاهر على الجهاز (6 أرقام، أو Enter إن لم يوجد):",
        "PIN shown by the instrument (6 digits, Enter if none):"),
    "bad_pin": (
        "Le code PIN doit avoir 6 chiffres.",
        "يجب أن يتكون الرمز السري PIN من 6 أرقام.",
        "The PIN must have 6 digits."),
    "testing_pairing": (
        "Essai d'appairage avec {addr}...",
        "تجربة الاقتران مع {addr}...",
        "Trying to pair with {addr}..."),
    "pin_refused": (
        "Appairage REFUSÉ par {addr} ({detail}) : vérifiez le code PIN.",
        "رفض الجهاز {addr} الاقتران ({detail}): تحقق من الرمز السري PIN.",
        "Pairing REFUSED by {addr} ({detail}): check the PIN."),
    "pair_error": (
        "Appairage impossible avec {addr} : {detail}",
        "تعذر الاقتران مع {addr}: {detail}",
        "Could not pair with {addr}: {detail}"),
    "board_pairs_later": (
        "La passerelle s'appairera à la première connexion ; vérifiez ensuite avec « doctor ».",
        "ستقترن البوابة عند أول اتصال؛ تحقق بعد ذلك بالأمر doctor.",
        "The gateway pairs on its first connection; check afterwards with `doctor`."),
    "not_paired": (
        "{addr} n'est pas appairé à cette passerelle.",
        "الجهاز {addr} غير مقترن بهذه البوابة.",
        "{addr} is not paired with this gateway."),
    "unpaired": (
        "{addr} retiré de la passerelle (configuration version {version}).",
        "تمت إزالة {addr} من البوابة (الإعدادات الإصدار {version}).",
        "{addr} removed from the gateway (configuration version {version})."),
    "serial_profile": (
        "Instrument série : --profile doit être l'un de {profiles}.",
        "جهاز تسلسلي: يجب أن يكون ‎--profile‎ أحد {profiles}.",
        "Serial instrument: --profile must be one of {profiles}."),
    "paired": (
        "{profile} {addr} appairé (configuration version {version}).",
        "تم اقتران {profile} {addr} (الإعدادات الإصدار {version}).",
        "{profile} {addr} paired (configuration version {version})."),
    "paired_again": (
        "{profile} {addr} appairé de nouveau (configuration version {version}).",
        "تم اقتران {profile} {addr} من جديد (الإعدادات الإصدار {version}).",
        "{profile} {addr} paired again (configuration version {version})."),
    "paired_serial": (
        "{profile} {addr} sur {port} enregistré (configuration version {version}).",
        "تم تسجيل {profile} {addr} على {port} (الإعدادات الإصدار {version}).",
        "{profile} {addr} on {port} recorded (configuration version {version})."),
    "identity": (
        "  Modèle {model}, numéro de série {serial}",
        "  الطراز {model}، الرقم التسلسلي {serial}",
        "  Model {model}, serial number {serial}"),
    "birth_preview": (
        "Au prochain démarrage, la passerelle annoncera à la flotte (message birth) :",
        "عند التشغيل القادم ستعلن البوابة للأسطول (رسالة birth):",
        "At its next start the gateway will report to the fleet (birth message):"),
    "profile_blood_pressure": ("Tensiomètre", "جهاز قياس ضغط الدم", "Blood pressure monitor"),
    "profile_glucose": ("Glucomètre", "جهاز قياس السكر", "Glucose meter"),
    "profile_thermometer": ("Thermomètre", "ميزان الحرارة", "Thermometer"),
    "profile_pulse_oximeter": ("Oxymètre", "مقياس التأكسج", "Pulse oximeter"),
    "profile_weight_scale": ("Balance", "الميزان", "Weighing scale"),
    "profile_ecg_cyton": ("ECG (Cyton)", "تخطيط القلب (Cyton)", "ECG (Cyton)"),
    "profile_onetouch": ("Glucomètre OneTouch", "جهاز السكر OneTouch", "OneTouch glucose meter"),
    "profile_astm": ("Analyseur ASTM", "محلل ASTM", "ASTM analyser"),
    # --- doctor --------------------------------------------------------------------
    "doctor_title": (
        "Diagnostic de la passerelle {where}",
        "تشخيص البوابة {where}",
        "Gateway check-up {where}"),
    "found_board": (
        "Carte trouvée : {platform}, MicroPython {mpy}",
        "تم العثور على اللوحة: {platform}، MicroPython {mpy}",
        "Board found: {platform}, MicroPython {mpy}"),
    "found_virtual": (
        "Passerelle virtuelle trouvée : {where}",
        "تم العثور على البوابة الافتراضية: {where}",
        "Virtual gateway found: {where}"),
    "fw_none": (
        "Aucune application installée : lancez « flash ».",
        "لا يوجد تطبيق مثبت: شغّل الأمر flash.",
        "No app installed: run `flash`."),
    "fw_none_virtual": (
        "Firmware : aucun emplacement d'application (lancée depuis les sources).",
        "البرنامج الثابت: لا توجد خانة تطبيق (يعمل من المصدر).",
        "Firmware: no app slot (runs from the sources)."),
    "fw_version": (
        "Firmware ummc {version} ({slot})",
        "البرنامج الثابت ummc {version} ({slot})",
        "Firmware ummc {version} ({slot})"),
    "fw_pending": (
        "Mise à jour {version} en essai ({tries} démarrage(s)).",
        "التحديث {version} قيد التجربة ({tries} تشغيل).",
        "Update {version} on trial ({tries} boot(s))."),
    "fw_rolled_back": (
        "La mise à jour {version} a été annulée par la passerelle ({reason}).",
        "ألغت البوابة التحديث {version} ({reason}).",
        "Update {version} was rolled back by the gateway ({reason})."),
    "config_ok": (
        "Configuration valide (version {version}) : unité {unit}, passerelle {gateway}, "
        "réseau {mode}",
        "الإعدادات صالحة (الإصدار {version}): الوحدة {unit}، البوابة {gateway}، الشبكة {mode}",
        "Configuration valid (version {version}): unit {unit}, gateway {gateway}, "
        "network {mode}"),
    "ca_missing": (
        "TLS activé mais pas de certificat CA (ca.pem) : relancez « provision » avec --ca.",
        "TLS مفعل لكن لا توجد شهادة CA ‏(ca.pem): أعد تشغيل provision مع ‎--ca‎.",
        "TLS is on but there is no CA certificate (ca.pem): run `provision` again with --ca."),
    "watchdog_was_off": (
        "Le chien de garde était désactivé (/nowdt laissé par une session interrompue) : "
        "réactivé.",
        "كان المراقب (watchdog) معطلا (‏/nowdt من جلسة مقطوعة): تمت إعادة تفعيله.",
        "The watchdog was off (/nowdt left by a session cut short): turned back on."),
    "config_trial": (
        "Un essai de configuration a été interrompu : l'ancienne revient au démarrage.",
        "تمت مقاطعة تجربة إعدادات: ستعود الإعدادات السابقة عند التشغيل.",
        "A configuration trial was cut short: the previous one returns at the next start."),
    "clock_host": (
        "Horloge : celle de cet ordinateur (passerelle virtuelle).",
        "الساعة: ساعة هذا الحاسوب (بوابة افتراضية).",
        "Clock: this computer's (virtual gateway)."),
    "clock_ok": (
        "Horloge à l'heure (écart {s} s).",
        "الساعة مضبوطة (فارق {s} ثانية).",
        "Clock on time ({s} s off)."),
    "clock_off": (
        "Horloge en {dir} de {off} : elle se remettra à l'heure à la connexion au serveur.",
        "الساعة {dir} بمقدار {off}: ستُضبط عند الاتصال بالخادم.",
        "Clock {dir} by {off}: it is set again when the gateway reaches the server."),
    "ahead": ("avance", "متقدمة", "ahead"),
    "behind": ("retard", "متأخرة", "behind"),
    "broker_skipped": (
        "Broker non testé (--offline).",
        "لم يتم اختبار الوسيط (‎--offline‎).",
        "Broker not tried (--offline)."),
    "broker_ok": (
        "Broker {broker} joignable, identifiants de {user} acceptés (testé depuis cet "
        "ordinateur).",
        "الوسيط {broker} متاح، وتم قبول بيانات دخول {user} (تم الاختبار من هذا الحاسوب).",
        "Broker {broker} reachable, {user}'s credentials accepted (tried from this computer)."),
    "broker_refused": (
        "Broker {broker} REFUSE la connexion ({detail}) : identifiants à vérifier avec "
        "l'administrateur.",
        "الوسيط {broker} يرفض الاتصال ({detail}): تحقق من بيانات الدخول مع المسؤول.",
        "Broker {broker} REFUSES the login ({detail}): check the credentials with the "
        "administrator."),
    "broker_unreachable": (
        "Broker {broker} injoignable : {detail}",
        "لا يمكن الوصول إلى الوسيط {broker}: {detail}",
        "Broker {broker} unreachable: {detail}"),
    "journal_none": (
        "Journal : pas encore créé (la passerelle n'a jamais tourné).",
        "السجل: لم يُنشأ بعد (لم تعمل البوابة قط).",
        "Journal: not created yet (the gateway has never run)."),
    "journal_empty": (
        "Journal vide : tout a été reçu par le serveur (jid {jid}).",
        "السجل فارغ: استلم الخادم كل شيء (jid {jid}).",
        "Journal empty: the server has everything (jid {jid})."),
    "journal_depth": (
        "Journal : {n} enregistrement(s) en attente d'envoi ({kb} Ko), le plus ancien il y a "
        "{age}.",
        "السجل: {n} سجل (سجلات) في انتظار الإرسال ({kb} ك.ب)، أقدمها منذ {age}.",
        "Journal: {n} record(s) waiting to be sent ({kb} KB), the oldest from {age} ago."),
    "journal_old": (
        "Des mesures attendent depuis {age} : vérifiez la liaison réseau.",
        "هناك قياسات تنتظر منذ {age}: تحقق من الاتصال بالشبكة.",
        "Readings have been waiting for {age}: check the network link."),
    "journal_full": (
        "Journal presque plein ({kb} Ko sur {cap} Ko) : la passerelle doit se connecter.",
        "السجل شبه ممتلئ ({kb} ك.ب من {cap} ك.ب): يجب أن تتصل البوابة.",
        "Journal nearly full ({kb} KB of {cap} KB): the gateway must connect."),
    "journal_damaged": (
        "{n} passage(s) abîmé(s) dans le journal ont été sautés (coupure de courant ?).",
        "تم تخطي {n} جزء (أجزاء) تالفة في السجل (انقطاع الكهرباء؟).",
        "{n} damaged stretch(es) in the journal were skipped (power cut?)."),
    "no_instruments": (
        "Aucun instrument appairé : lancez « pair ».",
        "لا يوجد جهاز مقترن: شغّل الأمر pair.",
        "No instrument paired: run `pair`."),
    "inst_never": (
        "{what} {addr} : jamais vu pour l'instant.",
        "{what} {addr}: لم يُرصد بعد.",
        "{what} {addr}: not seen yet."),
    "inst_seen": (
        "{what} {addr} : vu il y a {age}, {n} mesure(s) en attente.",
        "{what} {addr}: رُصد منذ {age}، {n} قياس (قياسات) في الانتظار.",
        "{what} {addr}: seen {age} ago, {n} reading(s) waiting."),
    "boot_never": (
        "Démarrages : aucun encore (la passerelle n'a jamais tourné).",
        "مرات التشغيل: لا شيء بعد (لم تعمل البوابة قط).",
        "Starts: none yet (the gateway has never run)."),
    "boot_unreadable": (
        "boot.json illisible.",
        "الملف boot.json غير مقروء.",
        "boot.json is unreadable."),
    "boot_counts": (
        "{boots} démarrage(s), dont {unexpected} inattendu(s).",
        "{boots} تشغيل، منها {unexpected} غير متوقع.",
        "{boots} start(s), {unexpected} of them unexpected."),
    "crash_recent": (
        "Plantage récent le {at} dans {where} : {detail}",
        "عطل حديث في {at} في {where}: {detail}",
        "Recent crash on {at} in {where}: {detail}"),
    "crash_old": (
        "Dernier plantage (ancien) le {at} dans {where} : {detail}",
        "آخر عطل (قديم) في {at} في {where}: {detail}",
        "Last crash (old) on {at} in {where}: {detail}"),
    "no_crash": (
        "Aucun plantage enregistré.",
        "لا يوجد أي عطل مسجل.",
        "No crash recorded."),
    "flash_free": (
        "Mémoire flash libre : {kb} Ko.",
        "ذاكرة الفلاش المتاحة: {kb} ك.ب.",
        "Free flash: {kb} KB."),
    "verdict_ok": (
        "VERDICT : passerelle en bon état, prête à partir.",
        "الحكم: البوابة في حالة جيدة وجاهزة للانطلاق.",
        "VERDICT: gateway in good order, ready to go."),
    "verdict_fail": (
        "VERDICT : {n} problème(s) à corriger avant le départ (code {code}).",
        "الحكم: {n} مشكلة (مشاكل) يجب إصلاحها قبل الانطلاق (الرمز {code}).",
        "VERDICT: {n} problem(s) to fix before it goes out (code {code})."),
    "age_s": ("{n} s", "{n} ثانية", "{n} s"),
    "age_min": ("{n} min", "{n} دقيقة", "{n} min"),
    "age_h": ("{n} h", "{n} ساعة", "{n} h"),
    "age_d": ("{n} jours", "{n} يوم", "{n} days"),
    # --- command line help ------------------------------------------------------------
    "help_prog": (
        "Outil du technicien UMMC : flasher, configurer, appairer et diagnostiquer une "
        "passerelle.",
        "أداة تقني UMMC: تحميل البرنامج، تهيئة البوابة، اقتران الأجهزة وتشخيصها.",
        "UMMC technician's tool: flash, provision, pair and check a gateway."),
    "help_lang": (
        "langue des messages : fr, ar, en (défaut : $UMMC_LANG, $LANG, sinon fr)",
        "لغة الرسائل: fr أو ar أو en (الافتراضي: ‎$UMMC_LANG‎ ثم ‎$LANG‎ وإلا fr)",
        "language of the messages: fr, ar, en (default: $UMMC_LANG, $LANG, else fr)"),
    "help_port": (
        "port série de la carte (ex. /dev/ttyUSB0)",
        "المنفذ التسلسلي للوحة (مثلا /dev/ttyUSB0)",
        "the board's serial port (e.g. /dev/ttyUSB0)"),
    "help_virtual": (
        "dossier « flash » d'une passerelle virtuelle (firmware/virtual)",
        "مجلد \"الذاكرة\" لبوابة افتراضية (firmware/virtual)",
        "flash directory of a virtual gateway (firmware/virtual)"),
    "help_no_restart": (
        "ne pas redémarrer la carte à la fin",
        "عدم إعادة تشغيل اللوحة في النهاية",
        "do not restart the board at the end"),
    "help_flash": (
        "installer MicroPython et l'application ummc, puis tout relire",
        "تثبيت MicroPython وتطبيق ummc ثم إعادة قراءة كل شيء",
        "install MicroPython and the ummc app, then read everything back"),
    "help_bundle": (
        "paquet du firmware : dossier build/ummc-X.Y.Z ou fichier .ummc",
        "حزمة البرنامج الثابت: المجلد build/ummc-X.Y.Z أو ملف ‎.ummc‎",
        "firmware bundle: the build/ummc-X.Y.Z directory or a .ummc file"),
    "help_trust": (
        "clé publique de la flotte (.pub, .pem ou 64 hex ; répétable)",
        "المفتاح العام للأسطول (‎.pub‎ أو ‎.pem‎ أو 64 رمزا ست عشريا؛ قابل للتكرار)",
        "the fleet's public key (.pub, .pem or 64 hex digits; repeatable)"),
    "help_image": (
        "image MicroPython (.bin) à écrire avec esptool (carte uniquement)",
        "صورة MicroPython ‏(‎.bin‎) للكتابة بـ esptool (للوحة فقط)",
        "MicroPython image (.bin) to write with esptool (boards only)"),
    "help_chip": ("type de puce ESP32", "نوع شريحة ESP32", "ESP32 chip type"),
    "help_baud": (
        "vitesse série pour esptool",
        "سرعة المنفذ التسلسلي لـ esptool",
        "serial speed for esptool"),
    "help_keep_data": (
        "ne pas effacer la mémoire avant d'écrire MicroPython (garde config et journal)",
        "عدم مسح الذاكرة قبل كتابة MicroPython (يحتفظ بالإعدادات والسجل)",
        "do not erase the flash before writing MicroPython (keeps config and journal)"),
    "help_provision": (
        "donner à la passerelle son identité, son réseau et son broker",
        "إعطاء البوابة هويتها وشبكتها والوسيط",
        "give the gateway its identity, network and broker"),
    "help_unit": ("code de l'unité (ex. U012)", "رمز الوحدة (مثلا U012)",
                  "unit code (e.g. U012)"),
    "help_gateway": (
        "identifiant de la passerelle (défaut : gw-<unité>)",
        "معرّف البوابة (الافتراضي: gw-<الوحدة>)",
        "gateway id (default: gw-<unit>)"),
    "help_network": (
        "type de réseau (déduit de --wifi-ssid / --apn)",
        "نوع الشبكة (يُستنتج من ‎--wifi-ssid‎ أو ‎--apn‎)",
        "network type (taken from --wifi-ssid / --apn)"),
    "help_wifi_ssid": ("nom du réseau Wi-Fi", "اسم شبكة Wi-Fi", "Wi-Fi network name"),
    "help_wifi_password": ("mot de passe Wi-Fi", "كلمة مرور Wi-Fi", "Wi-Fi password"),
    "help_apn": ("APN de la carte SIM", "APN لبطاقة SIM", "the SIM card's APN"),
    "help_apn_user": ("utilisateur APN", "مستخدم APN", "APN user"),
    "help_apn_password": ("mot de passe APN", "كلمة مرور APN", "APN password"),
    "help_broker": (
        "broker : mqtts://hôte:port (ou mqtt:// sans TLS)",
        "الوسيط: mqtts://host:port (أو mqtt://‎ بدون TLS)",
        "broker: mqtts://host:port (or mqtt:// without TLS)"),
    "help_ca_file": (
        "certificat CA du broker (PEM), copié dans ca.pem (obligatoire avec mqtts://)",
        "شهادة CA للوسيط (PEM)، تُنسخ إلى ca.pem (إلزامية مع mqtts://‎)",
        "the broker's CA certificate (PEM), copied to ca.pem (required with mqtts://)"),
    "help_client_cert": (
        "certificat client TLS de la passerelle (PEM)",
        "شهادة العميل TLS للبوابة (PEM)",
        "the gateway's TLS client certificate (PEM)"),
    "help_client_key": (
        "clé privée du certificat client (PEM)",
        "المفتاح الخاص لشهادة العميل (PEM)",
        "the client certificate's private key (PEM)"),
    "help_password": (
        "mot de passe de la passerelle sur le broker (sinon gardé ou généré)",
        "كلمة مرور البوابة لدى الوسيط (وإلا يُحتفظ بها أو تُولّد)",
        "the gateway's broker password (else kept or generated)"),
    "help_fleet_url": (
        "serveur de flotte (https://hôte) qui délivre le mot de passe de la passerelle",
        "خادم الأسطول (https://host) الذي يصدر كلمة مرور البوابة",
        "fleet server (https://host) that issues the gateway's password"),
    "help_fleet_token": (
        "jeton d'accès au serveur de flotte (sinon $UMMC_FLEET_TOKEN)",
        "رمز الدخول إلى خادم الأسطول (وإلا ‎$UMMC_FLEET_TOKEN‎)",
        "fleet server access token (else $UMMC_FLEET_TOKEN)"),
    "help_new_password": (
        "générer un nouveau mot de passe",
        "توليد كلمة مرور جديدة",
        "generate a new password"),
    "help_config_version": (
        "numéro de version de la configuration (défaut : actuel + 1)",
        "رقم إصدار الإعدادات (الافتراضي: الحالي + 1)",
        "configuration version number (default: current + 1)"),
    "help_label_dir": (
        "dossier des étiquettes QR (PNG)",
        "مجلد ملصقات QR ‏(PNG)",
        "directory for the QR labels (PNG)"),
    "help_no_label": ("pas d'étiquette QR", "بدون ملصق QR", "no QR label"),
    "help_accounts_dir": (
        "dossier du fichier de compte pour l'administrateur",
        "مجلد ملف الحساب للمسؤول",
        "directory for the account file for the administrator"),
    "help_pair": (
        "appairer un instrument (recherche, choix, code PIN)",
        "اقتران جهاز (بحث، اختيار، رمز PIN)",
        "pair an instrument (scan, choose, PIN)"),
    "help_ble": (
        "Bluetooth de cet ordinateur pour une passerelle virtuelle (transport bumble, "
        "ex. usb:0)",
        "بلوتوث هذا الحاسوب لبوابة افتراضية (ناقل bumble، مثلا usb:0)",
        "this computer's Bluetooth for a virtual gateway (bumble transport, e.g. usb:0)"),
    "help_scan_seconds": ("durée de la recherche (s)", "مدة البحث (ثوان)",
                          "how long to scan (s)"),
    "help_addr": (
        "adresse de l'instrument à appairer (sinon choix dans la liste)",
        "عنوان الجهاز المراد اقترانه (وإلا الاختيار من القائمة)",
        "address of the instrument to pair (else chosen from the list)"),
    "help_pin": ("code PIN à 6 chiffres", "الرمز السري PIN من 6 أرقام", "6-digit PIN"),
    "help_no_pin": (
        "l'instrument n'a pas de code PIN",
        "الجهاز ليس له رمز PIN",
        "the instrument has no PIN"),
    "help_no_test": (
        "ne pas essayer l'appairage depuis cet ordinateur",
        "عدم تجربة الاقتران من هذا الحاسوب",
        "do not try the pairing from this computer"),
    "help_remove": ("retirer cet instrument", "إزالة هذا الجهاز", "remove this instrument"),
    "help_serial": (
        "instrument série sur ce port de la passerelle",
        "جهاز تسلسلي على هذا المنفذ في البوابة",
        "a serial instrument on this port of the gateway"),
    "help_profile": (
        "profil de l'instrument série (ecg_cyton, onetouch, astm)",
        "ملف الجهاز التسلسلي (ecg_cyton أو onetouch أو astm)",
        "the serial instrument's profile (ecg_cyton, onetouch, astm)"),
    "help_name": ("nom de l'instrument", "اسم الجهاز", "instrument name"),
    "help_serial_baud": ("vitesse série", "سرعة المنفذ التسلسلي", "serial speed"),
    "help_doctor": (
        "diagnostic en un écran : versions, configuration, horloge, broker, journal, "
        "instruments, plantages",
        "تشخيص في شاشة واحدة: الإصدارات، الإعدادات، الساعة، الوسيط، السجل، الأجهزة، الأعطال",
        "one-screen check-up: versions, config, clock, broker, journal, instruments, crashes"),
    "help_offline": ("ne pas tester le broker", "عدم اختبار الوسيط", "do not try the broker"),
    "help_timeout": ("délai pour le broker (s)", "مهلة الوسيط (ثوان)",
                     "broker timeout (s)"),
    "help_ca": (
        "certificat CA du broker (TLS)",
        "شهادة CA للوسيط (TLS)",
        "the broker's CA certificate (TLS)"),
    "help_skew": (
        "écart d'horloge toléré (s)",
        "فارق الساعة المسموح (ثوان)",
        "clock difference tolerated (s)"),
    "help_label": (
        "refaire l'étiquette QR (unité et passerelle)",
        "إعادة إنشاء ملصق QR (الوحدة والبوابة)",
        "make the QR label again (unit and gateway)"),
}


def choose_lang(arg: str | None, env: Mapping[str, str]) -> str:
    for value in (arg, env.get("UMMC_LANG"), env.get("LANG")):
        code = (value or "")[:2].lower()
        if code in LANGS:
            return code
    return DEFAULT


class Messages:
    def __init__(self, lang: str = DEFAULT) -> None:
        self.lang = lang if lang in LANGS else DEFAULT
        self._i = LANGS.index(self.lang)

    def t(self, key: str, **fields: Any) -> str:
        return CATALOG[key][self._i].format(**fields)
