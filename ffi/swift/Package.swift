// swift-tools-version:5.9
// Rapport for iOS and macOS apps: the generated Swift bindings over the Rust core.
//
// Sources/Rapport holds the generated Swift files and RapportFFI.xcframework the static
// library with its C headers; both come from `ffi/scripts/build-xcframework` (run it on a
// Mac with Xcode and rustup). Neither is committed: they are built from the Rust sources.
import PackageDescription

let package = Package(
    name: "Rapport",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Rapport", targets: ["Rapport"]),
    ],
    targets: [
        .binaryTarget(name: "RapportFFI", path: "RapportFFI.xcframework"),
        .target(
            name: "Rapport",
            dependencies: ["RapportFFI"],
            path: "Sources/Rapport"
        ),
    ]
)
